"""The real create_app on SQLite and PostgreSQL for the fuzz tests, a catch-all Bot Connector, and a log watch.

`served` starts one app per test (fresh SQLite file, or a fresh PostgreSQL database since the app takes a
plain URL) with the admin API, the WeCom callback on the fake WeCom API and Teams in emulator mode.
`server_errors` fails the test when anything logged an error or an exception traceback: a 500 the route
turned into a polite answer still counts, and so does a background handler that crashed after the 200.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings

from app import create_app
from config import Settings, WeComSettings
from tests.wecom.callbacks import AES_KEY, TAXONOMY_YAML, TOKEN
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi, fake_wecom

__all__ = ["fake_wecom"]

ADMIN_TOKEN = "fuzz-admin-token-6d1f"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# Examples per test: enough to reach every route's refusals, few enough that the suite stays quick.
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_LONG = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class ErrorLog(logging.Handler):
    """Collects every record at ERROR or above, and every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (record.levelno >= logging.ERROR or record.exc_info) and not _protocol_refusal(record):
            self.records.append(record)

    def check(self) -> None:
        """Fail with the first offending records."""
        if self.records:
            shown = []
            for record in self.records[:3]:
                line = f"{record.name} {record.levelname}: {record.getMessage()[:300]}"
                if record.exc_info and record.exc_info[1] is not None:
                    line += f" [{type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:300]}]"
                shown.append(line)
            pytest.fail(f"{len(self.records)} errors logged, e.g.:\n" + "\n".join(shown))


def _protocol_refusal(record: logging.LogRecord) -> bool:
    """aiohttp's own 4xx for a request it cannot read as HTTP (a request line over 8 KiB): logged, answered 400."""
    error = record.exc_info[1] if record.exc_info else None
    return record.name == "aiohttp.server" and isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500


@pytest.fixture
def server_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    handler.check()


class Statuses:
    """Answers seen across a fuzz test's examples; the test must have reached the work, not only refusals."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, status: int) -> None:
        self.seen.append(status)

    def check(self) -> None:
        ok = sum(1 for s in self.seen if s < 300)
        refused = sum(1 for s in self.seen if 400 <= s < 500)
        assert ok and refused, f"the fuzz reached no work or no refusal: {sorted(set(self.seen))}"


@pytest.fixture
def statuses() -> Iterator[Statuses]:
    seen = Statuses()
    yield seen
    seen.check()


@dataclass
class CatchAllConnector:
    """A Bot Connector that accepts whatever the bot sends (the fuzz is about the inbound side)."""

    calls: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await request.read()
        if request.method == "GET":
            return web.json_response({"id": "29:member", "name": "成员", "aadObjectId": "00000000-0000-0000-0000-0"})
        return web.json_response({"id": f"reply-{self.calls}"})


@pytest.fixture
async def connector_url() -> AsyncIterator[str]:
    fake = CatchAllConnector()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()



@pytest.fixture
async def served(database_url: str, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    """The whole app: admin API, WeCom callback (fake WeCom API), Teams in emulator mode."""
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY_YAML, encoding="utf-8")
    app_settings = Settings(
        database_url=database_url,
        taxonomy_path=str(taxonomy),
        scheduler_enabled=False,
        admin_token=ADMIN_TOKEN,
        wecom=WeComSettings(
            corp_id=CORP_ID,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            secret=SECRET,
            agent_id=AGENT_ID,
            api_base=fake_wecom.api_base,
        ),
    )
    client = TestClient(TestServer(create_app(app_settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
