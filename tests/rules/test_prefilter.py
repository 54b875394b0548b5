"""Field prefilters never drop a customer the rule engine would fire for, on both databases.

A daily rule with a date test (birthday next month, a date within N days) or a numeric attribute test is run
only on the customers one SQL statement selects. The engine reads attribute dates and numbers leniently (ISO with
a time after it, YYYYMMDD, Y/M/D, M-D, unicode digits, padding …), so the statement must keep every customer the
engine could accept. Here customers hold birthdays and amounts in every accepted format plus junk, nulls,
numbers, leap days and missing keys; for many days (December's next month is January) and tests, the customers
the engine accepts must all be selected, and values in the plain formats must be decided exactly.
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rules.engine import (
    Clock,
    DateSpan,
    Facts,
    NumberSpan,
    Prefilter,
    check,
    date_span,
    evaluate,
    number_span,
    prefilter,
    target_month,
)
from core.rules.service import daily_pages, gather
from storage import tables as t
from storage.database import Database
from tagging.builtin import load_builtin
from tagging.rules import All, Any_, Compare, Events, Field, Rule, RuleSet, Trigger
from tests.rules.conftest import Cell, context

DAYS = (
    date(2026, 12, 6),  # next month is January
    date(2026, 12, 31),
    date(2026, 1, 31),
    date(2024, 2, 29),  # leap day
    date(2025, 2, 28),
    date(2026, 11, 15),
    date(2027, 9, 1),
    date(1999, 12, 20),  # a window reaching 2000, the year of dates without one
)
DATE_TESTS = (
    Field("birthday", month="this"),
    Field("birthday", month="next"),
    Field("birthday", within_days=0),
    Field("birthday", within_days=7),
    Field("birthday", within_days=45),
    Field("birthday", within_days=3650),
    Field("contract_end", month="this"),
    Field("contract_end", month="next"),
)
NUMBER_TESTS = tuple(
    Field("累计消费", compare=Compare(op, value))
    for op, value in ((">=", 5000), (">", 4999), ("<", 100), ("<=", -1), ("==", 5000), ("!=", 0), (">=", 0.5))
)
FIXED_DATES: tuple[Any, ...] = (
    "1980-01-05",
    "1990-12-31",
    "2000-02-29",
    "2001-02-29",
    "1990-13-05",
    "1990-00-10",
    "1990-01-05T08:00:00",
    "1990-01-05 08:00",
    "1990-01-05xyz",
    "1990-01-05-",
    "1990/01/05",
    "1990/1/5",
    "1990-1/5",
    "1990-1-5",
    "1990-12-5",
    "1990-1-15",
    "1990/01/05xyz",
    "19900105",
    "19901231",
    "19900230",
    19900105,
    19901231,
    19900105.0,
    "01-05",
    "1-5",
    "12/31",
    "2-29",
    "02-30",
    "13-01",
    " 1990-01-05 ",
    "\t01-05",
    "01-05 ",
    "１９９０-０１-０５",
    "+1990-1-5",
    "1_990-1-5",
    "2026-W53-1",
    "2027W011",
    "2026-W01",
    "2026-12-07",
    "2026-12-13",
    "2027-01-05",
    "2027-01-20",
    "2036-11-30",
    "2000-01-10",
    "",
    "   ",
    "abc",
    "1990年1月5日",
    None,
    True,
    False,
    0,
    -5,
    1.5,
    [],
    {},
    ["1990-01-05"],
    {"d": "1990-01-05"},
    "1e-05",
    "-1-5",
    "0000-01-05",
    "9999-12-31",
)
FIXED_NUMBERS: tuple[Any, ...] = (
    "5000",
    "4999.9999999999999999",
    "4999.99",
    "5,000",
    "5000.0",
    5000,
    4999,
    5000.0000001,
    "  5000 ",
    "５０００",
    "1_000_000",
    "1e4",
    "inf",
    "-inf",
    "nan",
    "-5000",
    "-1",
    True,
    None,
    "",
    "abc",
    "5000元",
    10**30,
    "0005000",
    ".5",
    "5.",
    "-.5",
    "0",
    0,
    "0.5",
    "99",
    [5000],
    "1,2,3",
)


def _random_date(rng: random.Random) -> Any:
    """A birthday in one of the formats people and imports write, sometimes invalid."""
    y, m, d = rng.randint(1950, 2030), rng.randint(0, 13), rng.randint(0, 32)
    forms = (
        f"{y:04d}-{m:02d}-{d:02d}",
        f"{y}/{m}/{d}",
        f"{y}-{m}-{d}",
        f"{y}/{m:02d}/{d:02d}",
        f"{y:04d}{m:02d}{d:02d}",
        f"{m:02d}-{d:02d}",
        f"{m}/{d}",
        f"{m}-{d:02d}",
        f"{y:04d}-{m:02d}-{d:02d}T10:00:00+08:00",
        y * 10_000 + m * 100 + d,
    )
    return rng.choice(forms)


def _random_number(rng: random.Random) -> Any:
    x = rng.choice((rng.randint(-100, 20_000), 5000, 4999, 100, 99, -1, 0))
    return rng.choice((str(x), f"{x:,}", x, float(x), f"{x}.{rng.randint(0, 99)}", f" {x}"))


def _attributes(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    values = [*FIXED_DATES, *(_random_date(rng) for _ in range(500))]
    numbers = [*FIXED_NUMBERS, *(_random_number(rng) for _ in range(200))]
    for i, birthday in enumerate(values):
        attrs: dict[str, Any] = {"birthday": birthday}
        if i % 5:
            attrs["累计消费"] = numbers[i % len(numbers)]
        out.append(attrs)
    out.extend({"累计消费": n} for n in numbers)
    out.append({})
    return out


async def _store(database: Database, rng: random.Random) -> list[int]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "name": f"客户{i}",
            "name_key": f"客户{i}",
            "company": "",
            "owner": "",
            "region": "",
            "contract_end": rng.choice((None, date(2026, 1, 1) + timedelta(days=rng.randint(-400, 800)))),
            "attributes": attrs,
            "created_at": now,
            "updated_at": now,
        }
        for i, attrs in enumerate(_attributes(rng))
    ]
    async with database.engine.begin() as conn:
        await conn.execute(t.customers.insert(), rows)
    store_ids = list(range(1, len(rows) + 1))
    return store_ids


def _fires(node: Field, facts: Facts, day: date) -> bool:
    return check(node, facts, Clock(datetime(day.year, day.month, day.day, 12, tzinfo=UTC), UTC))[0]


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _plain(node: Field, value: Any) -> bool:
    """A value the statement decides exactly: a valid plain ISO date for a date test, a whole number other
    than the bound for a numeric one (the bound itself passes the margin of `>` and `<`)."""
    if node.compare is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            return abs(value) < 10**15 and value != node.compare.value
        whole = isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,6}", value) is not None
        return whole and float(value) != node.compare.value
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


async def test_the_field_statement_keeps_every_customer_the_engine_accepts(database: Database) -> None:
    rng = random.Random(20261206)
    await _store(database, rng)
    store = context(database, Cell()).store
    async with store.unit_of_work(read_only=True) as uow:
        facts = await uow.rule_facts.facts(await uow.rule_facts.page(0, 10_000), (), datetime.now(UTC))
        checked = 0
        for day in DAYS:
            for node in (*DATE_TESTS, *NUMBER_TESTS):
                found = prefilter(Rule("r", Trigger("daily"), node, ()))
                assert found == Prefilter(field=node)
                now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
                chosen = set((await uow.rule_facts.candidates(found, now, day)).ids)
                accepted = {f.customer_id for f in facts if _fires(node, f, day)}
                missed = accepted - chosen
                shown = {f.customer_id: f.attributes.get(node.name) for f in facts if f.customer_id in missed}
                assert not missed, (node, day, shown)
                # Plain ISO dates, YYYYMMDD and whole numbers are decided in SQL, not left to the engine.
                extra = [
                    f.attributes.get(node.name)
                    for f in facts
                    if f.customer_id in chosen - accepted and _plain(node, f.attributes.get(node.name))
                ]
                assert not extra, (node, day, extra)
                if node.name == "contract_end":
                    assert chosen == accepted
                checked += len(accepted)
        assert checked > 1000


async def test_the_daily_job_fires_the_same_customers_with_and_without_field_prefilters(
    database: Database, cell: Cell, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    await _store(database, rng)
    builtin = load_builtin().rules.by_trigger("daily")
    birthday = next(r for r in builtin if r.name == "生日下月且累计消费5000")
    rules = [
        birthday,
        Rule(
            "month",
            Trigger("daily"),
            All((Field("birthday", month="this"), Field("累计消费", compare=Compare("<", 100)))),
            (),
        ),
        Rule("soon", Trigger("daily"), Field("birthday", within_days=60), ()),
        Rule("spend", Trigger("daily"), Field("累计消费", compare=Compare(">", 4999)), ()),
        Rule("renewal", Trigger("daily"), Field("contract_end", month="next"), ()),
        Rule(
            "either",
            Trigger("daily"),
            Any_((Field("birthday", month="next"), Events("purchase", 30, sum=Compare(">=", 1)))),
            (),
        ),
    ]
    cell.taxonomy = dataclasses.replace(cell.taxonomy, rules=RuleSet(tuple(rules), ()))
    ctx = context(database, cell, batch=50)

    async def fired(now: datetime) -> set[tuple[str, int]]:
        out: set[tuple[str, int]] = set()
        async for ids, group, known in daily_pages(ctx, rules, now):
            async with ctx.store.unit_of_work(read_only=True) as uow:
                for facts in await gather(uow, ctx, ids, group, now, known):
                    out.update((r.name, facts.customer_id) for r in group if evaluate(r, facts, now, ctx.tz))
        return out

    for day in (date(2026, 12, 6), date(2024, 2, 10), date(2026, 6, 30)):
        now = datetime(day.year, day.month, day.day, 4, tzinfo=UTC)
        with_prefilter = await fired(now)
        with monkeypatch.context() as patch:
            patch.setattr("core.rules.service.prefilter", lambda _rule: None)
            without = await fired(now)
        assert with_prefilter == without, day
        assert {name for name, _ in without} >= {"生日下月且累计消费5000", "spend", "renewal"}


# ---------------------------------------------------------------- pure


def test_prefilter_picks_the_birthday_month_of_the_builtin_rule() -> None:
    rule = next(r for r in load_builtin().rules.by_trigger("daily") if r.name == "生日下月且累计消费5000")
    assert prefilter(rule) == Prefilter(field=Field("birthday", month="next"))


def test_prefilter_prefers_events_then_contract_window_then_the_narrowest_date() -> None:
    def pick(*items: Any) -> Prefilter | None:
        return prefilter(Rule("r", Trigger("daily"), All(tuple(items)), ()))

    spend = Field("累计消费", compare=Compare(">=", 5000))
    month = Field("birthday", month="next")
    week = Field("入职日", within_days=7)
    threshold = Events("purchase", 30, count=Compare(">", 3))
    assert pick(spend, month, week, threshold) == Prefilter(events=threshold)
    assert pick(spend, month, Field("contract_end", within_days=30)) == Prefilter(contract_days=30)
    assert pick(spend, month, week) == Prefilter(field=week)
    assert pick(spend, Field("入职日", within_days=200), month) == Prefilter(field=month)
    assert pick(spend, Field("region", in_=("华东",))) == Prefilter(field=spend)
    # Columns other than contract_end are not attributes: scanned.
    assert pick(Field("region", month="next"), Field("name", within_days=3)) is None
    assert pick(Field('a"b', month="next")) == Prefilter(field=Field('a"b', month="next"))
    assert pick(Field("contract_end", compare=Compare(">=", 1))) is None


def test_next_month_of_december_is_january() -> None:
    assert target_month("next", date(2026, 12, 31)) == 1
    assert target_month("this", date(2026, 12, 31)) == 12
    assert date_span(Field("b", month="next"), date(2026, 1, 31)) == DateSpan(months=(2,))
    assert date_span(Field("b", within_days=1), date(2024, 2, 28)) == DateSpan((), date(2024, 2, 28), date(2024, 2, 29))


@given(st.sampled_from((">=", ">", "<=", "<", "==", "!=")), st.floats(-1e12, 1e12), st.floats(-1e12, 1e12))
def test_the_number_span_holds_every_number_the_test_accepts(op: str, bound: float, actual: float) -> None:
    compare = Compare(op, bound)
    span = number_span(compare)
    if compare.test(actual):
        assert (span.low is None or actual >= span.low) and (span.high is None or actual <= span.high)
    assert number_span(Compare("!=", bound)) == NumberSpan(None, None)
