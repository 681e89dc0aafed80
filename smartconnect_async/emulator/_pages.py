"""Canned bodies: IIS / ASP.NET HTML error pages, fault bodies and hostile XML answers."""

from __future__ import annotations

from http import HTTPStatus

from ._xml import OUTER_CLOSE, OUTER_OPEN, escape_text

_IIS_TITLES = {
    500: (
        "500 - Internal server error.",
        "There is a problem with the resource you are looking for, and it cannot be displayed.",
    ),
    502: (
        "502 - Web server received an invalid response while acting as a gateway or proxy server.",
        "There is a problem with the page you are looking for, and it cannot be "
        "displayed. When the Web server (while acting as a gateway or proxy) contacted the "
        "upstream content server, it received an invalid response from the content server.",
    ),
    504: (
        "504 - Gateway Timeout.",
        "The server, while acting as a gateway or proxy, did not "
        "receive a timely response from the upstream server.",
    ),
    404: (
        "404 - File or directory not found.",
        "The resource you are looking for might have "
        "been removed, had its name changed, or is temporarily unavailable.",
    ),
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def iis_error_page(status: int) -> str:
    """The HTML page IIS (or HTTP.sys, for 503) sends for ``status``."""
    if status == 503:
        return (
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
            "<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n"
            '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
            "<BODY><h2>Service Unavailable</h2>\r\n"
            "<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n"
            "</BODY></HTML>\r\n"
        )
    phrase = _phrase(status)
    title, detail = _IIS_TITLES.get(status, (f"{status} - {phrase}.", phrase + "."))
    return (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
        '<html xmlns="http://www.w3.org/1999/xhtml">\r\n<head>\r\n'
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\r\n'
        f"<title>{title}</title>\r\n</head>\r\n<body>\r\n"
        '<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">\r\n'
        ' <div class="content-container"><fieldset>\r\n'
        f"  <h2>{title}</h2>\r\n  <h3>{detail}</h3>\r\n"
        " </fieldset></div>\r\n</div>\r\n</body>\r\n</html>\r\n"
    )


ASPNET_RUNTIME_ERROR_PAGE = (
    "<!DOCTYPE html>\r\n<html>\r\n    <head>\r\n        <title>Runtime Error</title>\r\n"
    '        <meta name="viewport" content="width=device-width" />\r\n    </head>\r\n'
    '    <body bgcolor="white">\r\n'
    "            <span><H1>Server Error in '/' Application.<hr width=100% size=1 "
    "color=silver></H1>\r\n            <h2> <i>Runtime Error</i> </h2></span>\r\n"
    "            <b> Description: </b>An application error occurred on the server. The current "
    "custom error settings for this application prevent the details of the application error "
    "from being viewed remotely (for security reasons).\r\n    </body>\r\n</html>\r\n"
)
"""The ASP.NET custom-errors page, which a misconfigured site serves with status 200."""


def status_message(status: int, retry_after: int | None) -> str:
    """A readable message for an injected error status (sent as a JSON string)."""
    if status == 429:
        wait = retry_after if retry_after is not None else 1
        return f"Too many requests. Retry after {wait} second(s)."
    if status == 500:
        return "An error has occurred."
    if status == 503:
        return "The service is unavailable."
    return f"{status} {_phrase(status)}."


_LAUGHS = "".join(
    f'  <!ENTITY lol{n} "{"".join(f"&lol{n - 1};" for _ in range(10))}">\n' for n in range(1, 10)
)


def hostile_xml(variant: str) -> str:
    """An XML answer carrying a DTD a safe client must refuse to expand."""
    if variant == "external_entity":
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<!DOCTYPE string [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
            f"{OUTER_OPEN}&xxe;{OUTER_CLOSE}"
        )
    if variant == "inner_dtd":
        inner = (
            '<?xml version="1.0"?>\r\n<!DOCTYPE MyDataSet [\r\n  <!ENTITY lol0 "lol">\r\n'
            + _LAUGHS.replace("\n", "\r\n")
            + "]>\r\n<MyDataSet>\r\n  <Table01>\r\n    <AccountNumber>&lol9;</AccountNumber>\r\n"
            "  </Table01>\r\n</MyDataSet>"
        )
        return f"{OUTER_OPEN}{escape_text(inner)}{OUTER_CLOSE}"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE string [\n  <!ENTITY lol0 "lol">\n'
        f"{_LAUGHS}]>\n{OUTER_OPEN}&lol9;{OUTER_CLOSE}"
    )
