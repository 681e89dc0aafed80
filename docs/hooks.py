"""MkDocs hook: pages include parts of the repository's Markdown files, so each text has
one source (README.md, the emulator's README, benchmarks/RESULTS.md).

A line ``<!-- include PATH -->`` is replaced by the file at PATH (relative to the
repository); ``<!-- include PATH#Heading -->`` by that heading's section, without the
heading line, up to the next heading of the same or a higher level;
``<!-- include PATH#Heading top -->`` stops at the next heading of any level. A file
that is not Markdown (an example's code) comes whole, as a fenced code block. Links in
the included text are rewritten for the page: a file that is also a page of the site
(``SOURCES``) links to that page, a file under ``docs/`` to itself, and a link to a
heading of README.md to the page that includes it (``ANCHORS``). Anything else is an
error, so ``mkdocs build --strict`` catches a link that would break.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

SOURCES = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "smartconnect_async/emulator/README.md": "howto/emulator.md",
    "benchmarks/README.md": "benchmarks/method.md",
    "benchmarks/RESULTS.md": "benchmarks/index.md",
    "benchmarks/cpu_per_call.png": "benchmarks/cpu_per_call.png",
    "benchmarks/memory_vs_rows.png": "benchmarks/memory_vs_rows.png",
}
"""Repository files → where they are in the site (the images are copied in at build)."""

ANCHORS = {
    "README.md#performance": "benchmarks/performance.md",
    "README.md#limits-against-a-hostile-or-broken-server": (
        "concepts/client.md#limits-against-a-hostile-or-broken-server"
    ),
}
"""README.md's links to its own headings → the page that includes that heading."""

_INCLUDE = re.compile(r"^<!-- include (?P<path>[^#\s]+)(?:#(?P<heading>.+?))?(?P<top> top)? -->$")
_HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
_FENCE = re.compile(r"^(```|~~~)")
_LANGUAGES = {".py": "python"}
"""The fence's language for each suffix of an included code file."""


def on_files(files: Files, config: Any) -> Files:
    """Add the repository's images that pages show (one copy: the repository's)."""
    for source, target in SOURCES.items():
        if not source.endswith(".md"):
            files.append(File.generated(config, target, abs_src_path=str(ROOT / source)))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each include line of a page with the text it names."""
    lines = []
    for line in markdown.splitlines():
        match = _INCLUDE.match(line.strip())
        if match is None:
            lines.append(line)
            continue
        path, heading = match["path"], match["heading"]
        if not path.endswith(".md"):
            lines.append(_code(path, heading))
            continue
        text = _section(path, heading, top=bool(match["top"]))
        lines.append(_relink(text, path, page.file.src_uri))
    return "\n".join(lines) + "\n"


def _section(path: str, heading: str | None, *, top: bool) -> str:
    """The file at ``path``, or the section under ``heading`` (fenced code skipped)."""
    try:
        lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PluginError(f"include: cannot read {path}: {exc}") from None
    if heading is None:
        return "\n".join(lines)
    taken: list[str] = []
    level = 0
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        found = None if fenced else _HEADING.match(line)
        if level == 0:
            if found and found[2] == heading:
                level = len(found[1])
            continue
        if found and (top or len(found[1]) <= level):
            break
        taken.append(line)
    if level == 0:
        raise PluginError(f"include: no heading {heading!r} in {path}")
    return "\n".join(taken).strip("\n")


def _code(path: str, heading: str | None) -> str:
    """The code file at ``path``, fenced (in backticks more than any run it holds)."""
    if heading is not None:
        raise PluginError(f"include: {path} is not Markdown: it has no headings")
    text = _section(path, None, top=False)
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", text))])
    return f"{fence}{_LANGUAGES.get(Path(path).suffix, '')}\n{text}\n{fence}"


def _relink(text: str, source: str, page: str) -> str:
    """``text``'s relative links, written in ``source``, made to work from ``page``."""

    def replace(match: re.Match[str]) -> str:
        target = match[2]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if not path:
            resolved = source
        key = f"{resolved}#{anchor}" if anchor else resolved
        if key in ANCHORS:
            docs_path, _, anchor = ANCHORS[key].partition("#")
        elif resolved in SOURCES:
            docs_path = SOURCES[resolved]
        elif resolved.startswith("docs/"):
            docs_path = resolved.removeprefix("docs/")
        else:
            raise PluginError(f"include: {source} links to {target}, which the site lacks")
        relative = posixpath.relpath(docs_path, posixpath.dirname(page) or ".")
        return f"{match[1]}{relative}{'#' + anchor if anchor else ''}{match[3]}"

    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(replace, line))
    return "\n".join(out)
