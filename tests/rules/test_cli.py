"""The CLI verbs as real subprocesses: alerts/rules run-once, events import, rules test, webhooks failed."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select, update

from storage import tables as t
from storage.database import open_database
from tests.alerts.test_scheduler_cli import _kebiao

CUSTOMERS = """name,owner,region,crm_id,contract_end,birthday,累计消费,parent
甲公司,agent1,华东,CRM-1,2026-12-16,1980-01-05,6000,
乙公司,agent2,华南,CRM-2,2027-06-01,1990-05-05,100,
张三,agent1,华东,CRM-3,,,,甲公司
"""
EVENTS = """event_id,customer,kind,at,amount,campaign
p1,CRM-2,purchase,2026-12-01T10:00:00+08:00,100,
p2,CRM-2,purchase,2026-12-02T10:00:00+08:00,100,
p3,CRM-2,purchase,2026-12-03T10:00:00,100,
p4,乙公司,purchase,2026-12-04T10:00:00+08:00,100,双十二
p5,nobody,purchase,2026-12-04T10:00:00+08:00,100,
p6,CRM-2,Bad Kind,yesterday,abc,
"""


async def _counts(url: str) -> list[int]:
    database = await open_database(url)
    try:
        async with database.engine.connect() as conn:
            tables = (t.tag_assignments, t.tag_events, t.outbox, t.suggestions, t.customer_events)
            return [int((await conn.execute(select(func.count()).select_from(x))).scalar_one()) for x in tables]
    finally:
        await database.close()


async def test_the_contract_end_rule_holds_out_of_the_box_from_the_cli(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}
    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert (await _kebiao(env, "customers", "import", str(tmp_path / "c.csv")))[0] == 0
    assert (await _kebiao(env, "users", "set-role", "mgr1", "manager", "--region", "华东"))[0] == 0
    rc, out, err = await _kebiao(env, "alerts", "run-once", "--now", "2026-12-06T10:00:00+08:00")
    assert rc == 0, err
    assert "0 at risk" in out  # the weighted churn score alone: 0.4, under 0.6
    assert "服务到期未续费: fired for 1, +1 tags, -0 tags, 1 notifications" in out
    assert "pending 1" in out  # the manager's alert, waiting for the server's Teams drain
    rc, out, _ = await _kebiao(env, "customers", "show", "甲公司")
    assert rc == 0
    assert "高危流失" in out and "[规则「服务到期未续费」：合同到期 2026-12-16，10 天后；没有标签 续费意向]" in out
    assert "by rule:服务到期未续费 via rule — 规则「服务到期未续费」" in out
    # rules run-once again: no new alert (the outbox key holds), the tag renewed at most.
    rc, out, _ = await _kebiao(env, "rules", "run-once", "--now", "2026-12-06T11:00:00+08:00")
    assert rc == 0 and "服务到期未续费: fired for 1" in out and "notifications" not in out.split("服务到期未续费")[1]


async def test_events_import_keeps_good_lines_reports_bad_ones_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}
    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    (tmp_path / "e.csv").write_text(EVENTS, encoding="utf-8")
    await _kebiao(env, "customers", "import", str(tmp_path / "c.csv"))
    rc, out, err = await _kebiao(env, "events", "import", str(tmp_path / "e.csv"))
    assert rc == 1
    assert "6 events read: 4 stored, 0 already stored (unchanged), 2 refused" in out
    assert "购买后活跃: fired for 1, +1 tags" in out  # 4 purchases in 30 days: the event rule ran at once
    assert "e.csv:6: unknown customer 'nobody'" in err
    assert "e.csv:7: kind 'Bad Kind' is not an event kind" in err and "'amount' 'abc' is not a number" in err
    rc, out, _ = await _kebiao(env, "events", "import", str(tmp_path / "e.csv"))
    assert "0 stored, 4 already stored (unchanged), 2 refused" in out
    (tmp_path / "e.jsonl").write_text(
        '{"id": "p1", "customer": "CRM-2", "kind": "purchase", "at": "2026-12-01", "amount": 5}\n', encoding="utf-8"
    )
    rc, _, err = await _kebiao(env, "events", "import", str(tmp_path / "e.jsonl"))
    assert rc == 1 and "line 1" not in err and "e.jsonl:1: event id 'p1' was already used by an earlier import" in err


async def test_rules_test_forecasts_a_draft_and_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}
    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    await _kebiao(env, "customers", "import", str(tmp_path / "c.csv"))
    await _kebiao(env, "users", "set-role", "mgr1", "manager", "--region", "华东")
    rc, out, _ = await _kebiao(env, "taxonomy", "export")
    assert rc == 0
    (tmp_path / "draft.yaml").write_text(out, encoding="utf-8")
    before = await _counts(url)
    rc, out, err = await _kebiao(
        env,
        "rules",
        "test",
        str(tmp_path / "draft.yaml"),
        "--since",
        "30d",
        "--now",
        "2026-12-06T10:00:00+08:00",
        "--json",
    )
    assert rc == 0, err
    result = json.loads(out)
    contract = next(r for r in result["rules"] if r["rule"] == "服务到期未续费")
    assert contract["customers"] == 1 and contract["gain"] == {"高危流失": 1} and contract["recipients"] == {"mgr1": 1}
    assert contract["examples"][0]["customer"] == "甲公司"
    assert await _counts(url) == before
    rc, out, _ = await _kebiao(env, "rules", "test", str(tmp_path / "draft.yaml"), "--now", "2026-12-06T10:00:00+08:00")
    assert "- 服务到期未续费 [daily]: 1 customers" in out and "gain 高危流失: 1" in out and "nothing was written" in out
    (tmp_path / "bad.yaml").write_text(
        (tmp_path / "draft.yaml").read_text(encoding="utf-8").replace("lacks: 续费意向", "lacks: 续费意愿"),
        encoding="utf-8",
    )
    rc, _, err = await _kebiao(env, "rules", "test", str(tmp_path / "bad.yaml"))
    assert rc == 1 and "tag '续费意愿' is not in the taxonomy" in err


async def test_webhooks_failed_lists_and_resends(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}
    rc, out, err = await _kebiao(env, "webhooks", "failed")
    assert rc == 0 and "0 failed webhook calls" in err
    database = await open_database(url)
    try:
        from datetime import UTC, datetime

        from core.alerts.ports import NewOutboxMessage
        from storage.outbox import SqlAlertStore

        store = SqlAlertStore(database.engine)
        now = datetime.now(UTC)
        async with store.unit_of_work() as uow:
            body = {"body": {"rule": "退款售后"}}
            await uow.outbox.enqueue_many(
                [NewOutboxMessage("webhook:tickets|1|退款售后|m:x", "tickets", "webhook", body)], now
            )
        async with database.engine.begin() as conn:
            await conn.execute(update(t.outbox).values(state="failed", last_error="receiver answered HTTP 410"))
    finally:
        await database.close()
    rc, out, err = await _kebiao(env, "webhooks", "failed")
    assert "1\ttickets\t退款售后" in out and "HTTP 410" in out and "1 failed webhook calls" in err
    rc, out, _ = await _kebiao(env, "webhooks", "failed", "--resend", "1")
    assert rc == 0 and "webhook call 1 to tickets queued again" in out
    rc, _, err = await _kebiao(env, "webhooks", "failed", "--resend", "1")
    assert rc == 1 and "only a failed call can be resent" in err
