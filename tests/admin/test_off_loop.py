"""Upload parsing runs off the event loop, and a refusal lists at most 50 problems."""

from __future__ import annotations

import threading

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

import admin.routes as routes
from tests.admin.conftest import AUTH

V1 = "/admin/v1"


async def test_customer_files_and_taxonomies_are_parsed_in_a_worker_thread(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    parse_file, parse_taxonomy = routes.parse_customer_bytes, routes.load_taxonomy_text

    def file_spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return parse_file(*args, **kwargs)  # type: ignore[arg-type]

    def taxonomy_spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return parse_taxonomy(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(routes, "parse_customer_bytes", file_spy)
    monkeypatch.setattr(routes, "load_taxonomy_text", taxonomy_spy)
    form = FormData()
    form.add_field("file", "name\n上海明远\n".encode(), filename="customers.csv", content_type="text/csv")
    response = await client.post(f"{V1}/customers/import?dry_run=1", data=form, headers=AUTH)
    assert response.status == 200, await response.text()
    response = await client.put(
        f"{V1}/taxonomy", data="version: 1\ndimensions: []\n", headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert response.status == 400
    assert len(threads) == 2 and threading.main_thread().name not in threads


async def test_a_refusal_lists_fifty_problems_and_counts_the_rest(client: TestClient) -> None:
    rows = "".join(f"=bad{i}\n" for i in range(300))
    form = FormData()
    form.add_field("file", ("name\n" + rows).encode(), filename="customers.csv", content_type="text/csv")
    response = await client.post(f"{V1}/customers/import", data=form, headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert len(body["problems"]) == 51 and body["problems"][-1] == "… and 250 more problems"
    assert "300 problems" in body["error"]
