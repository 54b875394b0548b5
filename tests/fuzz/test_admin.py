"""Fuzz every /admin/v1 route through the real app on SQLite and PostgreSQL: random path and query values, JSON,
YAML, text and multipart bodies. No 5xx, nothing logged as an error; without the token, 401 whatever the body.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from admin.routes import PREFIX, ROUTES
from app import DATABASE
from core.records import CustomerDraft
from tests.fuzz.conftest import ADMIN_AUTH, FUZZ, FUZZ_LONG, ErrorLog, Statuses
from tests.fuzz.hostile import GARBAGE, HOSTILE_INT, HOSTILE_TEXT, JSON_VALUE, RAW_VALUE, dumps
from tests.wecom.callbacks import TAXONOMY_YAML

ROUTE_KEYS = [(r.method, r.path) for r in ROUTES]
QUERY_NAMES = ["q", "expr", "skip", "limit", "count", "actor", "dry_run"]
IDS = st.one_of(
    st.sampled_from(["1", "2", "0", "-1", "9223372036854775807", "9223372036854775808", "9" * 5000, "1.0", "１"]),
    st.text(max_size=20),
    HOSTILE_TEXT,
)
QUERY_VALUES = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=30),
    st.sampled_from(["VIP客户", "VIP客户 AND 询价客户", "NOT (", "ABC公司", "1", "true", "20"]),
    HOSTILE_INT.map(str),
)
TAGS = st.lists(
    st.one_of(st.sampled_from(["VIP客户", "询价客户", "普通客户", "展会获客"]), HOSTILE_TEXT, RAW_VALUE), max_size=4
)
ROUTE_BODIES = st.one_of(
    st.fixed_dictionaries({"version": st.one_of(HOSTILE_INT, RAW_VALUE, JSON_VALUE)}, optional={"actor": JSON_VALUE}),
    st.fixed_dictionaries({}, optional={"add": TAGS, "remove": TAGS, "actor": st.one_of(HOSTILE_TEXT, JSON_VALUE)}),
    st.fixed_dictionaries(
        {"role": st.sampled_from(["agent", "manager", "admin", "boss", "\x00"])},
        optional={"regions": st.lists(HOSTILE_TEXT, max_size=3), "display_name": HOSTILE_TEXT},
    ),
)
YAML_SNIPPETS = st.sampled_from(
    [
        "version: " + "9" * 5000,
        "version: 1\ncreated: 2001-13-45",
        "version: 2001-13-45",
        "version: 1\ndimensions: " + "[" * 500 + "]" * 500,
        "version: 1\ndimensions: {" + "a: {" * 300 + "}" * 301,
        'version: 1\ndimensions:\n  - key: a\n    name: b\n    tags:\n      - name: "\\ud800"',
        'version: 1\ndimensions:\n  - key: a\n    name: b\n    tags:\n      - name: "\\0x"',
        "version: 1\ndimensions:\n  - key: a\n    name: b\n    tags:\n      - {name: x, ttl_days: " + "9" * 5000 + "}",
        "version: 1\ndimensions:\n  - key: a\n    name: b\n    tags:\n      - {name: x, ttl_days: 1e999}",
        "version: !!python/object/apply:os.system ['true']",
        "a: &a [*a]",
        "version: 1\ndimensions: !!binary aGVsbG8=",
        "version: 1\ndimensions:\n  - key: " + "k" * 300 + "\n    name: n\n    tags: [{name: t}]",
        "version: .nan",
        "version: 0x7fffffffffffffffffff",
        "\ufeffversion: 1",
    ]
)
YAML_BODIES = st.one_of(
    YAML_SNIPPETS,
    st.builds(
        lambda a, b: TAXONOMY_YAML.replace(a, b, 1),
        st.sampled_from(["询价客户", "stage", "true", "报价"]),
        HOSTILE_TEXT,
    ),
    st.text(max_size=200),
)
TAXONOMY_FIELDS = st.sampled_from(
    ["key: stage", "name: 需求阶段", "- name: 询价客户", "keywords: [报价, 询价, 多少钱]"]
)


def _taxonomy_with(field: str, value: str) -> str:
    """The test taxonomy with one field's value replaced (as a double-quoted YAML string)."""
    name, _, _ = field.partition(": ")
    return TAXONOMY_YAML.replace(field, f"{name}: {json.dumps(value)}", 1)


TAXONOMIES = st.builds(_taxonomy_with, TAXONOMY_FIELDS, st.one_of(HOSTILE_TEXT, st.text(max_size=30)))
CSV_CELLS = st.one_of(HOSTILE_TEXT, st.text(max_size=20), st.sampled_from(["VIP客户", "2026-13-45", "9" * 5000]))


PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@st.composite
def csv_file(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(["name,company,tags,contract_end,owner,region", "name", "", "tags,tags"]))
    rows = draw(st.lists(st.lists(CSV_CELLS, min_size=1, max_size=6), max_size=4))
    lines = [header] + [",".join(json.dumps(c, ensure_ascii=False) if "," in c else c for c in row) for row in rows]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


CLEAN_CSV = st.lists(st.sampled_from(["新客户甲", "新客户乙,乙公司", "ABC公司,ABC贸易"]), min_size=1, max_size=3).map(
    lambda rows: ("name,company\n" + "\n".join(rows)).encode()
)


def _multipart(boundary: str, name: str, filename: str, content: bytes) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: text/csv\r\n\r\n"
    return head.encode("utf-8", "surrogatepass") + content + f"\r\n--{boundary}--\r\n".encode()


MULTIPART = st.one_of(
    st.builds(
        _multipart,
        st.just("fuzzB0undary"),
        st.sampled_from(["file", "other", ""]),
        st.sampled_from(["customers.csv", "customers.xlsx", "x.txt", "", "c\x00.csv", "名单.csv"]),
        st.one_of(csv_file(), CLEAN_CSV, st.binary(max_size=200)),
    ),
    st.binary(max_size=300),
    st.sampled_from([b"--fuzzB0undary\r\n", b"--fuzzB0undary--", b"--fuzzB0undary\r\nContent-Disposition: x\r\n\r\n"]),
)


# The bodies each route reads, drawn more often for it so the fuzz gets past the content-type checks.
KINDS = {
    "/taxonomy": ("yaml", "yaml", "yaml", "yaml", "json"),
    "/customers/import": ("multipart", "multipart", "multipart", "csv", "csv"),
    "/customers/{id}/tags": ("json", "json", "json"),
    "/taxonomy/rollback": ("json", "json", "json"),
    "/users/{user_id}": ("json", "json", "json"),
}


@st.composite
def request_parts(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """(method, raw URL path + query, headers, body) for one route with hostile parts."""
    method, path = draw(st.sampled_from(ROUTE_KEYS))
    for name in ("{id}", "{user_id}"):
        if name in path:
            value = draw(IDS)
            path = path.replace(name, quote(value.encode("utf-8", "surrogatepass"), safe="") or "%20")
    query = draw(st.dictionaries(st.sampled_from(QUERY_NAMES), QUERY_VALUES, max_size=3))
    raw_query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query.items())
    kind = draw(st.sampled_from([*KINDS.get(path, ()), "json", "json", "yaml", "multipart", "raw", "csv"]))
    headers = dict(ADMIN_AUTH)
    if kind == "json":
        headers["Content-Type"] = "application/json"
        body = draw(st.one_of(ROUTE_BODIES.map(dumps), JSON_VALUE.map(dumps), GARBAGE))
    elif kind == "yaml":
        headers["Content-Type"] = draw(st.sampled_from(["application/yaml", "text/yaml"]))
        body = draw(st.one_of(YAML_BODIES, YAML_SNIPPETS, TAXONOMIES)).encode("utf-8", "surrogatepass")
    elif kind == "multipart":
        headers["Content-Type"] = draw(
            st.sampled_from(["multipart/form-data; boundary=fuzzB0undary", "multipart/form-data", "multipart/mixed"])
        )
        body = draw(MULTIPART)
    elif kind == "csv":
        headers["X-Filename"] = draw(st.sampled_from(["customers.csv", "customers.xlsx", "a.CSV", "名单 .csv"]))
        body = draw(st.one_of(csv_file(), st.binary(max_size=200)))
    else:
        headers["Content-Type"] = draw(st.sampled_from(["text/plain", "application/octet-stream", "application/x-www"]))
        body = draw(GARBAGE)
    if method == "GET" and draw(st.integers(0, 4)):
        body = b""  # mostly without a body, so GET routes get past their 413 to the parameters
    return method, PREFIX + path + ("?" + raw_query if raw_query else ""), headers, body


@pytest.fixture
async def seeded(served: TestClient) -> AsyncIterator[TestClient]:
    """The served app with two customers, so customer routes reach the database with ids that exist."""
    now = datetime.now(UTC)
    async with served.app[DATABASE].unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="ABC公司", company="ABC贸易", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="华为上海", region="华东", crm_id="CRM-001"), now)
    yield served


async def _send(client: TestClient, method: str, url: str, headers: dict[str, str], body: bytes) -> Any:
    return await client.request(method, URL(url, encoded=True), headers=headers, data=body)


@FUZZ_LONG
@given(parts=request_parts())
async def test_every_admin_route_answers_below_500(
    seeded: TestClient, server_errors: ErrorLog, statuses: Statuses, parts: tuple[str, str, dict[str, str], bytes]
) -> None:
    method, url, headers, body = parts
    response = await _send(seeded, method, url, headers, body)
    text = await response.text()
    statuses.add(response.status)
    assert response.status < 500, (response.status, text[:500])
    if response.status >= 400:
        assert "Traceback" not in text
        assert len(text) < 20_000, "a refusal echoed too much of the request"
    server_errors.check()


@FUZZ
@given(parts=request_parts(), header=st.one_of(st.just(""), PRINTABLE.map(lambda t: "Bearer " + t), PRINTABLE))
async def test_without_the_token_every_admin_request_gets_401(
    seeded: TestClient, server_errors: ErrorLog, parts: tuple[str, str, dict[str, str], bytes], header: str
) -> None:
    method, url, headers, body = parts
    headers = {k: v for k, v in headers.items() if k != "Authorization"}
    if header:
        headers["Authorization"] = header
    response = await _send(seeded, method, url, headers, body)
    text = (await response.text())[:300]
    # aiohttp refuses a request line over 8 KiB itself, before any route (and so before any work): 400.
    refused_by_parser = response.status == 400 and text.startswith("Got more than 8190 bytes")
    assert response.status == 401 or refused_by_parser, (response.status, text)
    server_errors.check()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_routes_ignore_hostile_requests(served: TestClient, server_errors: ErrorLog, path: str) -> None:
    for method, body in (("GET", b"\x00" * 100), ("POST", b"{" * 10_000), ("GET", b"")):
        response = await served.request(method, URL(path + "?x=%00%ED%A0%80", encoded=True), data=body)
        assert response.status in (200, 405), response.status
    server_errors.check()


@FUZZ
@given(document=st.one_of(TAXONOMIES, YAML_SNIPPETS, YAML_BODIES), json_form=st.booleans())
async def test_taxonomy_documents_are_answered_below_500(
    seeded: TestClient, server_errors: ErrorLog, statuses: Statuses, document: str, json_form: bool
) -> None:
    """PUT /taxonomy with hostile YAML, or the same document sent as JSON when it parses as YAML."""
    body, content_type = document.encode("utf-8", "surrogatepass"), "application/yaml"
    if json_form:
        import yaml

        with contextlib.suppress(Exception):  # not YAML: sent as YAML, refused there
            body, content_type = dumps(yaml.safe_load(document)), "application/json"
    headers = {**ADMIN_AUTH, "Content-Type": content_type}
    response = await seeded.put(PREFIX + "/taxonomy", data=body, headers=headers)
    statuses.add(response.status)
    assert response.status < 500, (response.status, (await response.text())[:500])
    server_errors.check()


@FUZZ
@given(
    body=MULTIPART, raw=st.one_of(csv_file(), CLEAN_CSV, st.binary(max_size=300)), form=st.booleans(), dry=st.booleans()
)
async def test_customer_imports_are_answered_below_500(
    seeded: TestClient, server_errors: ErrorLog, statuses: Statuses, body: bytes, raw: bytes, form: bool, dry: bool
) -> None:
    """POST /customers/import with hostile multipart bodies and raw CSV uploads."""
    url = PREFIX + "/customers/import" + ("?dry_run=1" if dry else "")
    if form:
        headers = {**ADMIN_AUTH, "Content-Type": "multipart/form-data; boundary=fuzzB0undary"}
        response = await seeded.post(url, data=body, headers=headers)
    else:
        response = await seeded.post(url, data=raw, headers={**ADMIN_AUTH, "X-Filename": "customers.csv"})
    statuses.add(response.status)
    assert response.status < 500, (response.status, (await response.text())[:500])
    server_errors.check()
