"""Rules over a real database (SQLite and PostgreSQL): built-in rules, the contract-end alert, events, dry runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select

from core.alerts.jobs import run_once
from core.records import NewEvent
from core.rules.dryrun import forecast
from core.rules.events import parse_events
from core.rules.ingest import ingest_events
from core.rules.service import TAG_CURSOR, run_daily, run_for_message, run_tag_rules
from core.types import EventKind, Source
from scheduler import configure_jobs
from storage import tables as t
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tagging.loader import dump_taxonomy, load_taxonomy_text
from tagging.taxonomy import Taxonomy
from tests.rules.conftest import NOW, Cell, context, seed, use_taxonomy

TZ_CSV = "event_id,customer,kind,at,amount\n"


async def held(database: Database, customer_id: int) -> dict[str, Any]:
    async with database.unit_of_work() as uow:
        return {a.tag: a for a in await uow.assignments.active_for(customer_id)}


async def outbox(database: Database) -> list[Any]:
    async with database.engine.connect() as conn:
        return list((await conn.execute(select(t.outbox).order_by(t.outbox.c.id))).all())


async def count(database: Database, table: Any) -> int:
    async with database.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_contract_ending_in_ten_days_tags_and_alerts_the_manager_through_the_alert_run(
    database: Database, cell: Cell
) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    jobs = configure_jobs_for(database, cell, ctx)
    report = await run_once(jobs, NOW)
    assert report.churn.at_risk == 0  # the weighted score alone stays under its threshold (0.4 < 0.6) …
    tags = await held(database, ids["jia"])
    assert "高危流失" in tags and tags["高危流失"].source is Source.RULE  # … the rule still holds
    assert tags["高危流失"].assigned_by == "rule:服务到期未续费"
    async with database.unit_of_work() as uow:
        [event] = [e for e in await uow.events.for_customer(ids["jia"], 0, 10) if e.tag == "高危流失"]
    assert event.kind is EventKind.ADDED and event.evidence["rule"] == "服务到期未续费"
    assert event.evidence["taxonomy_version"] == 1
    assert event.evidence["facts"] == ["合同到期 2026-12-16，10 天后", "没有标签 续费意向"]
    rows = await outbox(database)
    alerts = [r for r in rows if r.payload["rule"] == "rule:服务到期未续费"]
    assert [r.recipient for r in alerts] == ["王经理"]  # managers of 华东 only, not 赵经理 (西南)
    reasons = [r["text"] for r in alerts[0].payload["reasons"]]
    assert "合同到期 2026-12-16，10 天后" in reasons and alerts[0].payload["title"] == "服务即将到期且未续费"
    # Another run (a second replica, the next hour) adds no second alert and the churn job leaves the tag alone.
    await run_once(jobs, NOW + timedelta(hours=1))
    assert len([r for r in await outbox(database) if r.payload["rule"] == "rule:服务到期未续费"]) == 1
    assert "高危流失" in await held(database, ids["jia"])
    assert "高危流失" not in await held(database, ids["yi"])


def configure_jobs_for(database: Database, cell: Cell, ctx: Any) -> Any:
    from config import Settings

    async def daily(now: Any) -> object:
        return await run_daily(ctx, now)

    settings = Settings(database_url="sqlite+aiosqlite://")
    return configure_jobs(settings, SqlAlertStore(database.engine), cell, {}, None, daily)


async def test_daily_builtin_rules_purchases_birthday_and_quarterly_spend(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    lines = [f"p{i},CRM-2,purchase,{(NOW - timedelta(days=i + 1)).isoformat()},1000" for i in range(4)]
    lines.append(f"big,CRM-1,purchase,{(NOW - timedelta(days=40)).isoformat()},500000")
    lines.append(f"old,CRM-1,purchase,{(NOW - timedelta(days=40)).isoformat()},1")
    report = await ingest_events(ctx, parse_events(TZ_CSV + "\n".join(lines), "csv", ctx.tz), NOW)
    assert report.stored == 6 and not report.errors
    await run_daily(ctx, NOW)
    assert "活跃客户" in await held(database, ids["yi"])  # 4 purchases in 30 days (> 3)
    jia = await held(database, ids["jia"])
    assert "活跃客户" not in jia  # its purchases are 40 days old
    assert "S级服务对象" in jia  # 500,001 in 90 days
    assert "年终回馈对象" in jia  # birthday in January, 累计消费 6000
    assert "年终回馈对象" not in await held(database, ids["yi"])


async def test_event_import_is_idempotent_and_reports_every_bad_line(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    at = (NOW - timedelta(days=1)).isoformat()
    text = TZ_CSV.replace("amount", "amount,campaign") + "\n".join(
        [
            f"c1,CRM-2,click,{at},,双十二",
            f"c2,乙公司,click,{at},,双十二",
            f"c3,CRM-2,click,{at},,",
            f"c4,nobody,click,{at},,",
            "c5,CRM-2,Click Now,yesterday,abc,",
            f"c1,CRM-2,click,{at},,双十二",
        ]
    )
    first = await ingest_events(ctx, parse_events(text, "csv", ctx.tz), NOW)
    assert (first.stored, first.repeated) == (3, 1)
    assert [(e.line, e.reason.split(":")[0]) for e in first.errors] == [
        (5, "unknown customer 'nobody'"),
        (6, "kind 'Click Now' is not an event kind"),
    ]
    assert "'at' 'yesterday' is not an ISO 8601 time" in first.errors[1].reason
    assert "'amount' 'abc' is not a number" in first.errors[1].reason
    assert "活跃客户" in await held(database, ids["yi"])  # 3 clicks: the event rule ran at once
    again = await ingest_events(ctx, parse_events(text, "csv", ctx.tz), NOW)
    assert (again.stored, again.repeated) == (0, 4) and await count(database, t.customer_events) == 3
    changed = TZ_CSV + f"c1,CRM-2,click,{at},99"
    conflict = await ingest_events(ctx, parse_events(changed, "csv", ctx.tz), NOW)
    assert conflict.stored == 0
    assert "event id 'c1' was already used by an earlier import with different content" in conflict.errors[0].reason
    jsonl = '{"id": "j1", "customer": "CRM-1", "kind": "login", "at": "2026-12-01T10:00:00"}\n{"id": "j2"}\n'
    mixed = await ingest_events(ctx, parse_events(jsonl, "jsonl", ctx.tz), NOW)
    assert mixed.stored == 1 and mixed.errors[0].line == 2


async def test_stored_events_keep_every_field_as_sent(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    lines = "\n".join(
        [
            '{"id": "p1", "customer": "CRM-2", "kind": "purchase", "at": "2026-12-01T10:00:00+08:00", "amount": 12.5,'
            ' "properties": {"渠道": "门店", "n": [1, {"x": null}]}}',
            '{"id": "p2", "customer": "CRM-1", "kind": "login", "at": "2026-12-01T02:00:00Z"}',
        ]
    )
    report = await ingest_events(ctx, parse_events(lines, "jsonl", ctx.tz), NOW, source="api")
    assert (report.stored, report.errors) == (2, [])
    e = t.customer_events.c
    async with database.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    e.event_id, e.customer_id, e.kind, e.at, e.amount, e.properties, e.source, e.recorded_at
                ).order_by(e.event_id)
            )
        ).all()
    p1, p2 = rows
    assert (p1.event_id, p1.customer_id, p1.kind, p1.amount, p1.source) == ("p1", ids["yi"], "purchase", 12.5, "api")
    assert p1.properties == {"渠道": "门店", "n": [1, {"x": None}]} and p1.recorded_at == NOW
    assert p1.at == p2.at == NOW.replace(year=2026, month=12, day=1, hour=2, minute=0, second=0, microsecond=0)
    assert (p2.customer_id, p2.amount, p2.properties) == (ids["jia"], None, {})
    # The same lines again are repeats; one changed line is refused by line, the unchanged one still a repeat.
    again = await ingest_events(ctx, parse_events(lines.replace("12.5", "13"), "jsonl", ctx.tz), NOW)
    assert (again.stored, again.repeated, [x.line for x in again.errors]) == (0, 1, [1])


async def test_message_rules_tag_and_notify_the_owner_at_once(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    report = await run_for_message(ctx, ids["yi"], "msg-1", ["紧急工单"], NOW)
    assert report.rules["投诉加急"].added == 1 and report.rules["投诉加急"].notified == 1
    [row] = [r for r in await outbox(database) if r.payload["rule"] == "rule:投诉加急"]
    assert row.recipient == "小李" and row.next_attempt_at is None  # outside quiet hours: due now
    # 退款 without a configured ticket webhook: the tag, no call.
    refund = await run_for_message(ctx, ids["yi"], "msg-2", ["售后工单"], NOW)
    assert refund.rules["退款售后"].added == 1 and refund.rules["退款售后"].webhooks_unconfigured == 1
    assert not [r for r in await outbox(database) if r.channel == "webhook"]
    configured = context(database, cell, webhook_url=lambda hook: "https://tickets.example.com/hook")
    await run_for_message(configured, ids["yi"], "msg-3", ["售后工单"], NOW)
    await run_for_message(configured, ids["yi"], "msg-3", ["售后工单"], NOW)  # a retried message
    [call] = [r for r in await outbox(database) if r.channel == "webhook"]
    assert call.recipient == "tickets" and call.payload["body"]["rule"] == "退款售后"
    assert call.payload["body"]["customer"]["crm_id"] == "CRM-2"


def builtin_with(rules: str) -> Taxonomy:
    """The built-in taxonomy with `rules` (YAML of a `rules:` section) appended, its webhooks left out."""
    return load_taxonomy_text(dump_taxonomy(load_builtin()).split("\nwebhooks:")[0] + rules)


TAG_RULES = """
rules:
  - name: VIP变化通知
    trigger: {tag: VIP客户}
    then:
      - notify: [owner, "user:运营"]
        title: VIP 变化
  - name: 战略伙伴
    trigger: daily
    when: {has: 重点客户}
    then:
      - add: VIP客户
        to: contacts
"""


async def test_tag_change_rules_and_contacts_of_a_company(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    await use_taxonomy(database, cell, builtin_with(TAG_RULES))
    ctx = context(database, cell)
    await run_tag_rules(ctx, NOW)  # the first pass starts at the end of the log
    async with database.unit_of_work() as uow:
        await uow.assignments.insert_active(ids["jia"], "value", "重点客户", Source.MANUAL, "小张", NOW, None)
    await run_daily(ctx, NOW)
    assert "VIP客户" in await held(database, ids["zhang"])  # the contact of 甲公司
    assert "VIP客户" not in await held(database, ids["jia"])
    async with database.unit_of_work() as uow:
        [event] = [e for e in await uow.events.for_customer(ids["zhang"], 0, 5) if e.tag == "VIP客户"]
    assert event.evidence["via_company"] == ids["jia"]
    notified = sorted(r.recipient for r in await outbox(database) if r.payload["rule"] == "rule:VIP变化通知")
    assert notified == ["小张", "运营"]  # run_daily ran the tag rules for the change it made
    again = await run_tag_rules(ctx, NOW)
    assert not again.rules  # the cursor moved: nothing twice


async def test_with_no_tag_rule_the_cursor_follows_the_log_without_reading_it(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)  # the built-in taxonomy: no rule triggered by a tag change
    assert not cell.taxonomy.rules.by_trigger("tag")
    await run_tag_rules(ctx, NOW)
    async with database.unit_of_work() as uow:
        await uow.assignments.insert_active(ids["jia"], "value", "重点客户", Source.MANUAL, "小张", NOW, None)
        await uow.events.append(
            NewEvent(ids["jia"], "value", "重点客户", EventKind.ADDED, "小张", Source.MANUAL, NOW)
        )
    seen: list[str] = []

    def statement(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        seen.append(" ".join(sql.split()))

    event.listen(database.engine.sync_engine, "before_cursor_execute", statement)
    try:
        await run_tag_rules(ctx, NOW)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", statement)
    assert not [q for q in seen if q.startswith("SELECT tag_events.")], seen  # no event was read …
    async with ctx.store.unit_of_work() as facts:
        end = await facts.rule_facts.last_tag_event_id()
        assert end and await facts.rule_facts.cursor(TAG_CURSOR) == end  # … and the cursor is at the log's end

    # A tag rule added now acts on the changes after that point only.
    await use_taxonomy(database, cell, builtin_with(TAG_RULES))
    assert not (await run_tag_rules(context(database, cell), NOW)).rules
    async with database.unit_of_work() as uow:
        await uow.assignments.insert_active(ids["yi"], "value", "VIP客户", Source.MANUAL, "小李", NOW, None)
        await uow.events.append(NewEvent(ids["yi"], "value", "VIP客户", EventKind.ADDED, "小李", Source.MANUAL, NOW))
    assert (await run_tag_rules(context(database, cell), NOW)).rules["VIP变化通知"].notified


async def test_dry_run_forecasts_without_writing(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    ctx = context(database, cell)
    lines = [f"p{i},CRM-2,purchase,{(NOW - timedelta(days=i + 1)).isoformat()},10" for i in range(5)]
    await ingest_events(ctx, parse_events(TZ_CSV + "\n".join(lines), "csv", ctx.tz), NOW)
    before = [await count(database, table) for table in (t.tag_assignments, t.tag_events, t.outbox, t.suggestions)]
    result = await forecast(ctx, load_builtin(), NOW, 30)
    after = [await count(database, table) for table in (t.tag_assignments, t.tag_events, t.outbox, t.suggestions)]
    assert before == after
    by_rule = {r.rule: r for r in result.rules}
    contract = by_rule["服务到期未续费"]
    assert contract.fired == 1 and contract.gains["高危流失"] == 1 and contract.recipients["王经理"] == 1
    assert contract.examples[0]["customer"] == "甲公司"
    assert by_rule["30天购买超过3次"].gains["活跃客户"] == 0  # 乙公司 already got it from the event rule
    assert result.customers == 3 and ids


async def test_the_summary_card_shows_why_a_rule_applied_a_tag(database: Database, cell: Cell) -> None:
    import json

    from cards.present import summary_card
    from core.tags.summary import customer_summary
    from core.types import Role, User

    ids = await seed(database)
    await run_daily(context(database, cell), NOW)
    async with database.unit_of_work() as uow:
        summary = await customer_summary(uow, cell.taxonomy, ids["jia"], User("王经理", Role.MANAGER), NOW)
    [risk] = [t for g in summary.groups for t in g.tags if t.name == "高危流失"]
    assert risk.reason == "规则「服务到期未续费」：合同到期 2026-12-16，10 天后；没有标签 续费意向"
    card = json.dumps(
        summary_card(summary, User("王经理", Role.MANAGER), cell.taxonomy, NOW, "zh", []), ensure_ascii=False
    )
    assert "高危流失 · 规则「服务到期未续费」：合同到期 2026-12-16，10 天后；没有标签 续费意向" in card


MORE_RULES = """
rules:
  - name: 清理活跃
    trigger: daily
    when: {has: 沉默客户}
    then:
      - remove: 活跃客户
  - name: 建议续费
    trigger: daily
    when:
      all:
        - field: {name: contract_end, within_days: 30}
        - field: {name: region, in: [华东]}
    then:
      - suggest: 续费意向
"""


async def test_remove_and_suggest_actions(database: Database, cell: Cell) -> None:
    ids = await seed(database)
    await use_taxonomy(database, cell, builtin_with(MORE_RULES))
    async with database.unit_of_work() as uow:
        for tag in ("活跃客户", "沉默客户"):
            await uow.assignments.insert_active(ids["yi"], "behavior", tag, Source.MANUAL, "小李", NOW, None)
    report = await run_daily(context(database, cell), NOW)
    assert report.rules["清理活跃"].removed == 1 and "活跃客户" not in await held(database, ids["yi"])
    async with database.unit_of_work() as uow:
        [removed] = [e for e in await uow.events.for_customer(ids["yi"], 0, 5) if e.kind is EventKind.REMOVED]
        [pending] = await uow.suggestions.pending_for(ids["jia"])
    assert removed.actor == "rule:清理活跃" and removed.evidence["facts"] == ["有标签 沉默客户（0 天前加上）"]
    assert pending.tag == "续费意向" and pending.evidence["rule"] == "建议续费"
    [card] = [r for r in await outbox(database) if r.payload["rule"] == "rule:建议续费"]
    assert card.recipient == "小张" and card.payload["title"] == "建议为客户添加标签「续费意向」"
    again = await run_daily(context(database, cell), NOW + timedelta(hours=1))
    assert "建议续费" not in {n for n, o in again.rules.items() if o.suggested or o.notified}


async def test_event_rules_after_a_large_import_read_the_counts_set_based(database: Database, cell: Cell) -> None:
    """1,200 customers with one click each and one with three: the rules read the counts in a couple of
    statements (not a page at a time), and only the customer over the threshold is tagged."""
    from sqlalchemy import event

    from core.records import CustomerDraft

    ids = await seed(database)
    async with database.unit_of_work() as uow:
        await uow.customers.add_many([CustomerDraft(f"客户{i}", crm_id=f"B-{i}") for i in range(1200)], NOW)
    ctx = context(database, cell, batch=100)  # the old page-by-page read would take a dozen statements
    at = (NOW - timedelta(days=1)).isoformat()
    lines = [f"b{i},B-{i},click,{at}," for i in range(1200)] + [f"y{i},CRM-2,click,{at}," for i in range(3)]
    parsed = parse_events(TZ_CSV + "\n".join(lines), "csv", ctx.tz)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "customer_events" in statement and "GROUP BY" in statement.upper():
            statements.append(statement)  # the rules' event counts

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        report = await ingest_events(ctx, parsed, NOW)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    assert report.stored == 1203 and report.rules is not None and report.rules.customers == 1201
    # one GROUP BY … HAVING per threshold (click, purchase), then the counts of the one customer over it (looked
    # at read-only, then again under the write lock): page by page it took one per 100 customers
    assert len(statements) == 4, statements
    assert "活跃客户" in await held(database, ids["yi"])
    async with database.engine.connect() as conn:
        tagged = (await conn.execute(select(func.count()).select_from(t.tag_assignments))).scalar_one()
    assert tagged == 1
