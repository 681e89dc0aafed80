"""``python -m benchmarks._parse_worker SPEC_JSON``: one data-set parse in a fresh
process; prints one JSON line with rows, client CPU (and the kernel's part of it) and
wall seconds, minor page faults and peak RSS growth.

Modes:
- ``iter_rows``: ``sc.data.iter_rows`` (default client), rows counted and dropped.
- ``get_all``: ``sc.data.get_all`` (default client), every row kept.
- ``naive``: httpx reads the whole answer, defusedxml parses the outer document, then
  the inner string; every row kept as a dict.
- ``raw_expat``: pyexpat over the inner document's bytes (a file prepared beforehand,
  read in 64 KiB chunks), with trivial handlers building the same row dicts; no network.
- ``prepare``: stream the answer and write its inner document to ``inner`` (not timed).

Peak RSS growth is the peak RSS during the work (``VmHWM``, reset just before it) minus
the RSS just before it.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from xml.parsers import expat

import psutil  # type: ignore[import-untyped]  # no stubs installed

CHUNK = 1 << 16


def _proc_status(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, if any."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name == field:
                    return int(value.split()[0]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``VmHWM``) to its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    """Peak RSS of this process, in bytes.

    ``VmHWM`` where there is one: ``getrusage``'s ``ru_maxrss`` also counts the peak of
    the parent's image this process was forked from (Linux keeps it across exec), which
    would hide any growth smaller than the benchmark harness's own size.
    """
    peak = _proc_status("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _token_params(spec: dict[str, Any]) -> dict[str, str]:
    from smartconnect_async import hash_password

    return {
        "email": spec["email"],
        "password": hash_password(spec["password"]),
        "companyId": spec["company_id"],
    }


def raw_expat(path: str) -> int:
    """Rows of the inner document at ``path``: row dicts built and dropped."""
    rows = 0
    depth = 0
    row: dict[str, str] = {}
    column = ""
    text: list[str] = []

    def start(name: str, _attributes: object) -> None:
        nonlocal depth, row, column, text
        depth += 1
        if depth == 3:
            column, text = name, []
        elif depth == 2:
            row = {}

    def end(_name: str) -> None:
        nonlocal depth, rows
        if depth == 3:
            row[column] = "".join(text)
        elif depth == 2:
            rows += 1
        depth -= 1

    def data(chunk: str) -> None:
        if depth == 3:
            text.append(chunk)

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return rows


def naive(body: bytes) -> int:
    """Rows of the answer parsed twice with defusedxml: outer, then inner string."""
    from defusedxml.ElementTree import fromstring

    inner = fromstring(body).text or ""
    rows = [{column.tag: column.text or "" for column in element} for element in fromstring(inner)]
    return len(rows)


async def _library(spec: dict[str, Any], mode: str, measure: Callable[..., Any]) -> Any:
    from smartconnect_async import Credentials, SmartConnect
    from smartconnect_async._xml import DataSetParser  # noqa: F401 - imported before baseline

    credentials = Credentials(spec["email"], spec["password"], spec["company_id"])
    async with SmartConnect(spec["url"], credentials) as sc:
        await sc.maps.list()  # token, connection, imports: all before the baseline

        async def iterate() -> int:
            count = 0
            async for _row in sc.data.iter_rows(spec["map_key"]):
                count += 1
            return count

        async def get_all() -> int:
            return len((await sc.data.get_all(spec["map_key"])).rows)

        return await measure(iterate if mode == "iter_rows" else get_all)


async def _naive(spec: dict[str, Any], measure: Callable[..., Any]) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=spec["timeout"]) as client:
        answer = await client.post(f"{spec['url']}/GetToken", params=_token_params(spec))
        answer.raise_for_status()
        params = {"token": answer.json(), "mapKey": spec["map_key"]}

        async def fetch_and_parse() -> int:
            answer = await client.post(
                f"{spec['url']}/GetAllData", params=params, headers={"Accept": "application/xml"}
            )
            answer.raise_for_status()
            return naive(answer.content)

        return await measure(fetch_and_parse)


def _prepare(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx

    with httpx.Client(timeout=spec["timeout"]) as client:
        answer = client.post(f"{spec['url']}/GetToken", params=_token_params(spec))
        answer.raise_for_status()
        params = {"token": answer.json(), "mapKey": spec["map_key"]}
        outer = expat.ParserCreate()
        outer.buffer_text = True
        size = 0
        with open(spec["inner"], "wb") as inner:
            outer.CharacterDataHandler = lambda text: inner.write(text.encode())
            url = f"{spec['url']}/GetAllData"
            with client.stream("POST", url, params=params) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_bytes():
                    size += len(chunk)
                    outer.Parse(chunk, False)
            outer.Parse(b"", True)
    return {"outer_bytes": size}


async def _timed(work: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    _reset_peak()
    baseline = psutil.Process().memory_info().rss
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu, wall = time.process_time(), time.perf_counter()
    rows = await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rows": rows,
        "cpu": cpu,
        "wall": wall,
        "rss_growth": _peak_rss() - baseline,
        "system": after.ru_stime - before.ru_stime,
        "page_faults": after.ru_minflt - before.ru_minflt,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    mode = spec["mode"]
    if mode == "prepare":
        result = _prepare(spec)
    elif mode == "raw_expat":

        async def parse_file() -> int:
            return raw_expat(spec["inner"])

        result = asyncio.run(_timed(parse_file))
    elif mode == "naive":
        result = asyncio.run(_naive(spec, _timed))
    elif mode in ("iter_rows", "get_all"):
        result = asyncio.run(_library(spec, mode, _timed))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
