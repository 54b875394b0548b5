"""MatcherHolder: builds off the request path, swaps atomically, last rebuild wins."""

from __future__ import annotations

import asyncio
import threading

from core.taxonomy.matcher_holder import MatcherHolder
from tagging.matcher import Matcher
from tagging.taxonomy import Dimension, TagDef, Taxonomy


def _taxonomy(tag: str, keyword: str) -> Taxonomy:
    tags = (TagDef(name=tag, dimension="stage", path=(tag,), keywords=(keyword,)),)
    return Taxonomy(version=1, dimensions=(Dimension(key="stage", name="需求阶段", tags=tags),))


def _tags(holder: MatcherHolder, text: str) -> list[str]:
    assert holder.current is not None
    return [s.tag for s in holder.current.suggest(text)]


async def test_requests_use_the_old_matcher_during_a_slow_rebuild() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow_build(taxonomy: Taxonomy) -> Matcher:
        started.set()
        release.wait(10)
        return Matcher.build(taxonomy)

    holder = MatcherHolder(Matcher.build(_taxonomy("询价客户", "报价")), builder=slow_build)
    rebuild = asyncio.create_task(holder.rebuild(_taxonomy("售后工单", "退款")))
    await asyncio.to_thread(started.wait, 10)
    assert _tags(holder, "请报价，顺便退款") == ["询价客户"]  # answered while the build is blocked
    release.set()
    assert await rebuild is True
    assert _tags(holder, "请报价，顺便退款") == ["售后工单"]


async def test_last_rebuild_wins_when_an_older_one_finishes_later() -> None:
    gates = {"旧": threading.Event(), "新": threading.Event()}

    def gated_build(taxonomy: Taxonomy) -> Matcher:
        name = taxonomy.dimensions[0].tags[0].name
        gates[name].wait(10)
        return Matcher.build(taxonomy)

    holder = MatcherHolder(builder=gated_build)
    assert holder.current is None
    older = asyncio.create_task(holder.rebuild(_taxonomy("旧", "报价")))
    await asyncio.sleep(0)
    newer = asyncio.create_task(holder.rebuild(_taxonomy("新", "报价")))
    await asyncio.sleep(0)
    gates["新"].set()
    assert await newer is True
    gates["旧"].set()
    assert await older is False
    assert _tags(holder, "请报价") == ["新"]
    assert holder.generation == 2
