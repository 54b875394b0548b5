"""客户 and 报表 through the real app: search and paging, tags under the chat policy, charts data, CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from console.csvout import cell, to_csv
from tests.console.conftest import sign_in


async def test_name_search_pages(client: TestClient) -> None:
    await sign_in(client)
    html = await (await client.get("/console/customers", params={"q": "测试客户", "mode": "name"})).text()
    assert "共 30 位客户" in html and "1 / 2" in html and "测试客户00" in html and "测试客户25" not in html
    html = await (await client.get("/console/customers", params={"q": "测试客户", "page": "2"})).text()
    assert "测试客户25" in html and "测试客户00" not in html


async def test_expression_search_and_its_errors(client: TestClient) -> None:
    await sign_in(client)
    html = await (await client.get("/console/customers", params={"q": "VIP客户 AND 高危流失", "mode": "expr"})).text()
    assert "共 5 位客户" in html  # odd ids that are multiples of 3: 3, 9, 15, 21, 27
    bad = await client.get("/console/customers", params={"q": "VIP客户 AND (", "mode": "expr"})
    assert bad.status == 400 and 'role="alert"' in await bad.text()


async def test_customer_page_and_tag_changes_under_policy(client: TestClient) -> None:
    csrf = await sign_in(client)
    customer = client.seeded["customers"][0]  # type: ignore[attr-defined]
    html = await (await client.get(f"/console/customers/{customer}")).text()
    assert "普通客户" in html and "高危流失" in html and "标签时间线" in html
    # exclusive dimension: VIP客户 replaces 普通客户; the event records the console user
    response = await client.post(
        f"/console/customers/{customer}/tags", data={"csrf": csrf, "add": "VIP客户"}, allow_redirects=False
    )
    assert response.status == 303
    html = await (await client.get(response.headers["Location"])).text()
    assert "标签已更新" in html and "VIP客户 ← 普通客户" in html and "kebiao:operator" in html
    # an unknown tag refuses the whole submission: the valid one is not applied either
    response = await client.post(
        f"/console/customers/{customer}/tags", data={"csrf": csrf, "add": "活跃客户, 不存在的标签"}
    )
    assert response.status == 400
    html = await response.text()
    assert "不存在的标签" in html
    assert "活跃客户</" not in html.split("标签时间线")[0].split('id="tags-h"')[1]
    response = await client.post(
        f"/console/customers/{customer}/tags", data={"csrf": csrf, "remove": "高危流失"}, allow_redirects=False
    )
    assert response.status == 303
    assert (await client.get("/console/customers/999999")).status == 404


async def test_reports_page_and_csv(client: TestClient) -> None:
    await sign_in(client)
    response = await client.get("/console/reports")
    assert response.status == 200
    html = await response.text()
    for chart in ("usage-chart", "rate-chart", "matrix-chart"):
        assert f'id="{chart}"' in html
    matrix = json.loads(re.search(r'id="matrix-data">(.*?)</script>', html).group(1))  # type: ignore[union-attr]
    assert "VIP客户" in matrix["tags"] and "高危流失" in matrix["tags"]
    vip, risk = matrix["tags"].index("VIP客户"), matrix["tags"].index("高危流失")
    assert [vip, risk, 5] in matrix["cells"]
    usage = json.loads(re.search(r'id="usage-data">(.*?)</script>', html).group(1))  # type: ignore[union-attr]
    assert len(usage["days"]) == 30
    response = await client.get("/console/reports/tags.csv")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[0][:4] == ["dimension", "tag", "in_taxonomy", "holders"]
    assert rows[[r[1] for r in rows].index("VIP客户")][:2] == ["value", "VIP客户"]
    assert (await client.get("/console/reports/nope.csv")).status == 404


def test_csv_cells_cannot_become_formulas() -> None:
    assert [cell(v) for v in ("=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "普通", -5, 0.5)] == [
        "'=1+1",
        "'+SUM(A1)",
        "'-2+3",
        "'@cmd",
        "'\tx",
        "'\rx",
        "普通",
        "-5",
        "0.5",
    ]
    data = to_csv(["name"], [['=HYPERLINK("x")']]).decode("utf-8")
    assert data.startswith("\ufeffname\r\n") and "'=HYPERLINK" in data


async def test_reports_merge_candidate_one_click(client: TestClient) -> None:
    csrf = await sign_in(client)
    response = await client.post(
        "/console/taxonomy/merge",
        data={
            "csrf": csrf,
            "dimension": "value",
            "source": "潜在客户",
            "target": "普通客户",
            "next": "/console/reports",
        },
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"].startswith("/console/reports?done=merged_done")
    html = await (await client.get("/console/taxonomy")).text()
    assert "合并到 普通客户" in html and "kebiao:operator" in html
    bad = await client.post(
        "/console/taxonomy/merge",
        data={"csrf": csrf, "dimension": "value", "source": "潜在客户", "target": "普通客户", "next": "https://evil"},
    )
    assert bad.status == 400  # 潜在客户 is gone now


async def test_stale_report_figures_are_shown_while_refreshing(client: TestClient, monkeypatch: Any) -> None:
    import asyncio

    from console.pages import reports

    csrf = await sign_in(client)
    monkeypatch.setattr(reports, "REPORT_TTL", 0.0)

    def holders(html: str) -> int:
        row = re.search(r"<td>活跃客户</td>\s*<td class=\"num\">(\d+)</td>", html)
        assert row, "no 活跃客户 row"
        return int(row.group(1))

    assert holders(await (await client.get("/console/reports")).text()) == 0
    customer = client.seeded["customers"][1]  # type: ignore[attr-defined]
    await client.post(f"/console/customers/{customer}/tags", data={"csrf": csrf, "add": "活跃客户"})
    assert holders(await (await client.get("/console/reports")).text()) == 0  # stale, refresh started
    cache = client.app._subapps[0][reports.CACHE]  # type: ignore[attr-defined]
    if cache.refreshing is not None:
        await asyncio.wait_for(asyncio.shield(cache.refreshing), 10)
    assert holders(await (await client.get("/console/reports")).text()) == 1
