"""Fault injection, rate limit and admin routes, on the wire over loopback TCP."""

from __future__ import annotations

import time
from typing import Any

import defusedxml  # type: ignore[import-untyped, unused-ignore]
import defusedxml.ElementTree as safe_xml  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    DemoCredential,
    Emulator,
    FaultRule,
    create_app,
    parse_faults,
)
from smartconnect_async.emulator._faults import FaultPlan

pytestmark = pytest.mark.anyio
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)
ROWS = b"<RequestData><Table><AccountNumber>C1</AccountNumber></Table></RequestData>"


# -- rules -------------------------------------------------------------------------------


def test_rule_json_forms_are_equivalent() -> None:
    listed = parse_faults(
        [{"kind": "drop_after", "count": 1, "endpoints": ["runmap"]}, {"kind": "latency", "ms": 5}]
    )
    assert parse_faults({"rules": [r.to_json() for r in listed]}) == listed
    keyed = parse_faults(
        {"RUNMAP": [{"kind": "drop_after", "count": 1}], "*": {"kind": "latency", "ms": 5}}
    )
    assert keyed == listed
    assert listed[0].to_json() == {"kind": "drop_after", "endpoints": ["runmap"], "count": 1}


def test_keyed_rules_are_narrowed_by_their_own_endpoints() -> None:
    (rule,) = parse_faults(
        {"runmap": [{"kind": "drop_before", "endpoints": ["runmap", "GetAllData"]}]}
    )
    assert rule.endpoints == frozenset({"runmap"})


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ([{"kind": "explode"}], "kind"),
        ([{"count": 1}], "kind"),
        ([{"kind": "status", "stauts": 500}], "field"),
        ([{"kind": "status", "status": 200}], "status"),
        ([{"kind": "status", "share": 1.5}], "share"),
        ([{"kind": "status", "share": 0.5, "count": 1}], "either"),
        ([{"kind": "status", "count": "1"}], "count"),
        ([{"kind": "status", "html": "yes"}], "html"),
        ([{"kind": "latency", "endpoints": ["GetEverything"]}], "endpoint"),
        ({"GetEverything": [{"kind": "latency"}]}, "endpoint"),
        ([{"kind": "hostile_xml", "variant": "xxe"}], "variant"),
        (["drop_after"], "object"),
        ("drop_after", "string"),
    ],
)
def test_bad_rules_are_refused(spec: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_faults(spec)


def test_shares_are_deterministic_per_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan(seed, parse_faults([{"kind": "status", "share": 0.5}]))
        return [plan.decide("GetMapList").action is not None for _ in range(64)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 16 < sum(pattern(7)) < 48


def test_counts_latency_and_first_action_wins() -> None:
    plan = FaultPlan(
        0,
        parse_faults(
            [
                {"kind": "latency", "ms": 100},
                {"kind": "latency", "ms": 20, "jitter_ms": 10, "endpoints": ["runmap"]},
                {"kind": "status", "status": 500, "count": 2, "endpoints": ["runmap"]},
                {"kind": "drop_before", "count": 1},
            ]
        ),
    )
    first, second, third, fourth = (plan.decide("runmap") for _ in range(4))
    assert 0.12 <= first.delay <= 0.13
    assert [d.action.kind if d.action else None for d in (first, second, third, fourth)] == [
        "status",
        "status",
        "drop_before",  # its count was not spent while the status rule fired
        None,
    ]
    assert plan.decide("GetMapList").delay == pytest.approx(0.1)
    assert plan.to_json()[2]["remaining"] == 0


# -- on the wire -------------------------------------------------------------------------


@pytest.fixture
async def http(served: str) -> Any:
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        yield client


def params(token: str) -> dict[str, str]:
    return {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}


async def test_drop_before_runs_nothing(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults({"runmap": [{"kind": "drop_before", "count": 1}]})
    with pytest.raises(DROPPED):
        await http.post("/runmap", params=params(token))
    counters = emulator.counters
    assert (counters.calls["runmap"], counters.total_runs) == (1, 0)
    assert counters.faults_fired == {"drop_before": 1}
    assert emulator.runs == ()
    assert (await http.post("/runmap", params=params(token))).status_code == 200
    assert emulator.counters.total_runs == 1


async def test_drop_before_with_an_unread_body_runs_nothing(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "drop_before", "count": 1}])
    with pytest.raises((*DROPPED, httpx.WriteError)):  # the body may still be in flight
        await http.post(
            "/runmapdatatable",
            params=params(token),
            content=ROWS + b" " * 200_000,
            headers={"content-type": "application/xml"},
        )
    assert emulator.runs == ()


async def test_drop_after_runs_the_map_but_answers_nothing(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "drop_after", "count": 1, "endpoints": ["runmapdatatable"]}])
    with pytest.raises(DROPPED) as raised:
        await http.post(
            "/runmapdatatable",
            params=params(token),
            content=ROWS,
            headers={"content-type": "application/xml"},
        )
    assert not isinstance(raised.value, httpx.HTTPStatusError)
    (record,) = emulator.runs
    assert record.documents == ({"AccountNumber": "C1"},)
    assert emulator.counters.runs_by_map == {IMPORT_CUSTOMERS_KEY: 1}


async def test_truncated_answers(http: httpx.AsyncClient, emulator: Emulator, token: str) -> None:
    emulator.set_faults([{"kind": "truncate", "count": 3}])
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|received"):
        await http.post("/GetMapList", params={"token": token})  # Content-Length, cut midway
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete"):
        await http.post("/GetAllData", params=params(token))  # chunked, cut midway
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/runmap", params=params(token))
    assert emulator.counters.total_runs == 1  # a truncated run answer: the run happened


async def test_a_truncated_answer_is_never_complete(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "truncate", "after_bytes": 10**9}])
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/GetMapList", params={"token": token})
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/GetAllData", params=params(token))


async def test_truncate_after_a_given_number_of_bytes(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "truncate", "after_bytes": 100_000, "count": 1}])
    received = bytearray()

    async def read() -> None:
        async with http.stream("POST", "/GetAllData", params=params(token)) as response:
            async for chunk in response.aiter_raw():
                received.extend(chunk)

    with pytest.raises(httpx.RemoteProtocolError):
        await read()
    assert len(received) == 100_000


@pytest.mark.parametrize(
    ("rule", "status", "content_type"),
    [
        ({"kind": "status", "status": 429, "retry_after": 7}, 429, "application/json"),
        ({"kind": "status", "status": 500}, 500, "application/json"),
        ({"kind": "status", "status": 502, "html": True}, 502, "text/html"),
        ({"kind": "status", "status": 503, "html": True}, 503, "text/html"),
        ({"kind": "status", "status": 504}, 504, "application/json"),
        ({"kind": "html_200"}, 200, "text/html"),
    ],
)
async def test_error_answers_run_nothing(
    http: httpx.AsyncClient,
    emulator: Emulator,
    token: str,
    rule: dict[str, Any],
    status: int,
    content_type: str,
) -> None:
    emulator.set_faults([{**rule, "count": 1}])
    response = await http.post("/runmap", params=params(token))
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert response.text.strip()
    assert "x-request-id" in response.headers
    if status == 429:
        assert response.headers["retry-after"] == "7"
    if content_type == "text/html":
        assert "<html" in response.text.lower()
    assert emulator.runs == ()


async def test_a_processed_status_fault_runs_the_map(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "status", "status": 504, "html": True, "processed": True}])
    response = await http.post("/runmap", params=params(token))
    assert response.status_code == 504
    assert len(emulator.runs) == 1


async def test_429_defaults_to_retry_after_one_second(
    http: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "status", "status": 429}])
    response = await http.post("/GetMapList", params={"token": token})
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


@pytest.mark.parametrize("variant", ["billion_laughs", "external_entity", "inner_dtd"])
async def test_hostile_xml_is_refused_by_a_safe_parser(
    http: httpx.AsyncClient, emulator: Emulator, token: str, variant: str
) -> None:
    emulator.set_faults([{"kind": "hostile_xml", "variant": variant}])
    response = await http.post("/GetAllData", params=params(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8"

    def parse_both() -> None:
        outer = safe_xml.fromstring(response.content, forbid_dtd=True)
        safe_xml.fromstring(outer.text, forbid_dtd=True)

    with pytest.raises(defusedxml.DTDForbidden):
        parse_both()


async def test_latency(http: httpx.AsyncClient, emulator: Emulator, token: str) -> None:
    emulator.set_faults({"GetMapList": [{"kind": "latency", "ms": 150}]})
    start = time.perf_counter()
    assert (await http.post("/GetMapList", params={"token": token})).status_code == 200
    assert time.perf_counter() - start >= 0.15
    assert emulator.fault_plan.decide("validate").delay == 0


async def test_in_process_drops_raise_what_httpx_raises(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    emulator.set_faults([{"kind": "drop_after", "count": 1}, {"kind": "truncate", "count": 1}])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await client.post("/runmap", params=params(token))
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await client.post("/GetMapList", params={"token": token})
    assert emulator.counters.total_runs == 1


# -- rate limit --------------------------------------------------------------------------


async def test_rate_limit_headers_and_429(clock: Any, alice: DemoCredential) -> None:
    emulator = Emulator(clock=clock, rate_limit="3/60")
    token = emulator.issue_token(alice.email, alice.company_id)
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e/API") as client:
        answers = [await client.post("/GetMapList", params={"token": token}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["x-rate-limit-remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert {a.headers["x-rate-limit-limit"] for a in answers} == {"3"}
        assert {a.headers["x-rate-limit-reset"] for a in answers} == {"60"}
        assert answers[3].headers["retry-after"] == "60"
        assert "Retry after 60" in answers[3].json()
        emulator.advance_clock(45)
        late = await client.post("/validate", params={"token": token})
        assert (late.status_code, late.headers["retry-after"]) == (429, "15")
        emulator.advance_clock(15)
        again = await client.post("/validate", params={"token": token})
        assert (again.status_code, again.headers["x-rate-limit-remaining"]) == (200, "2")
        assert "x-rate-limit-limit" not in (await client.get("http://e/_emulator/counters")).headers
    assert emulator.counters.rate_limited == 2
    assert emulator.counters.calls == {"GetMapList": 4, "validate": 2}


# -- admin routes ------------------------------------------------------------------------


async def test_admin_routes(served: str, emulator: Emulator, alice: DemoCredential) -> None:
    origin = served.removesuffix("/API")
    login = {"email": alice.email, "password": alice.password, "companyId": alice.company_id}
    async with httpx.AsyncClient(base_url=origin) as admin:
        rules = [{"kind": "drop_before", "count": 1, "endpoints": ["runmap"]}]
        installed = await admin.post("/_emulator/faults", json=rules)
        assert installed.json() == [{**rules[0], "remaining": 1}]
        assert (await admin.post("/_emulator/faults", json=[{"kind": "nope"}])).status_code == 400

        token = (await admin.post("/API/GetToken", params=login)).json()
        await admin.post("/API/GetToken", params={**login, "companyId": "demo02"})
        with pytest.raises(DROPPED):
            await admin.post("/API/runmap", params=params(token))
        await admin.post("/API/runmap", params=params(token))

        counters = (await admin.get("/_emulator/counters")).json()
        assert counters == {
            "calls": {"GetToken": 2, "runmap": 2},
            "total_calls": 4,
            "token_calls": {"DEMO01": 1, "DEMO02": 1},
            "runs_by_map": {IMPORT_CUSTOMERS_KEY: 1},
            "total_runs": 1,
            "faults_fired": {"drop_before": 1},
            "rate_limited": 0,
            "runs_in_flight_max": {"DEMO01": 1},
        }
        (run,) = (await admin.get("/_emulator/runs")).json()
        assert (run["MapKey"], run["Endpoint"], run["RecordCount"]) == (
            IMPORT_CUSTOMERS_KEY,
            "runmap",
            500,
        )

        assert (await admin.get("/_emulator/faults")).json() == [{**rules[0], "remaining": 0}]
        assert (await admin.delete("/_emulator/faults")).json() == []
        assert emulator.faults == ()
        reset = (await admin.post("/_emulator/reset")).json()
        assert (reset["total_calls"], reset["calls"]) == (0, {})
        assert len(emulator.runs) == 1  # history stays

        moved = await admin.post("/_emulator/clock", json={"advance_seconds": 100 * 86400})
        assert moved.json()["now"].startswith("2024-08-09T12:00:00")
        assert (await admin.post("/API/validate", params={"token": token})).json() is False
        expired = await admin.post("/API/GetMapList", params={"token": token})
        assert expired.status_code == 401
        back = await admin.post("/_emulator/clock", json={"now": "2024-05-02T00:00:00+00:00"})
        assert back.json()["now"].startswith("2024-05-02T00:00:00")
        assert (await admin.post("/API/validate", params={"token": token})).json() is True
        assert (await admin.post("/_emulator/clock", json={"later": 1})).status_code == 400
        assert (await admin.get("/_emulator/saved-errors")).json() == []


def test_faults_given_at_start_up(alice: DemoCredential) -> None:
    emulator = Emulator(faults={"*": [{"kind": "status", "status": 503, "count": 1}]})
    assert emulator.faults == (FaultRule("status", status=503, count=1),)
