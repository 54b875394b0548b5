"""Turn leases on the real channel store: held while a turn runs, retaken after it lapsed, finished for good."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from core.chat.ports import InboundLease
from core.chat.turns import TurnLeases
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.statements import count_statements

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = "msteams:a:conversation:activity-1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def leases(database: Database, clock: Clock, wait: float = 0.2) -> TurnLeases:
    """One process's leases (seconds-long waits shortened so the tests stay quick)."""
    return TurnLeases(SqlChannelStore(database.engine), "teams", wait=wait, poll=0.02, clock=clock)


async def test_a_finished_turn_makes_every_retry_a_duplicate(database: Database) -> None:
    clock = Clock()
    mine = leases(database, clock)
    assert await mine.claim(KEY)
    assert mine.held == {KEY}
    mine.finish(KEY)
    await mine.flush()
    assert mine.held == frozenset()
    clock.now = T0 + timedelta(days=1)  # long after any lease would have lapsed
    assert not await mine.claim(KEY)
    assert not await leases(database, clock).claim(KEY)  # another replica agrees


async def test_a_released_turn_runs_again_at_once(database: Database) -> None:
    clock = Clock()
    mine = leases(database, clock)
    assert await mine.claim(KEY)
    await mine.release(KEY)
    assert mine.held == frozenset()
    assert await leases(database, clock).claim(KEY)


async def test_a_dead_process_lease_is_retaken_once_it_lapsed_and_not_before(database: Database) -> None:
    dead = leases(database, Clock())
    assert await dead.claim(KEY)  # then the process is killed: nobody finishes or renews it
    early = leases(database, Clock(T0 + timedelta(seconds=5)))
    assert not await early.claim(KEY)  # still leased: a live turn would answer it
    late = leases(database, Clock(T0 + timedelta(seconds=11)))
    assert await late.claim(KEY)
    assert not await leases(database, Clock(T0 + timedelta(seconds=12))).claim(KEY)  # the new holder's lease


async def test_renewal_keeps_a_slow_turn_from_being_retaken(database: Database) -> None:
    clock = Clock()
    slow = leases(database, clock)
    assert await slow.claim(KEY)
    clock.now = T0 + timedelta(seconds=8)
    await slow.renew()  # the background renewer does this every few seconds
    assert not await leases(database, Clock(T0 + timedelta(seconds=15))).claim(KEY)
    assert await leases(database, Clock(T0 + timedelta(seconds=19))).claim(KEY)


async def test_a_retry_waits_for_a_lease_that_lapses_meanwhile_and_takes_it(database: Database) -> None:
    assert await leases(database, Clock()).claim(KEY)
    clock = Clock(T0 + timedelta(seconds=9))
    retry = leases(database, clock, wait=5.0)

    async def time_passes() -> None:
        await asyncio.sleep(0.1)
        clock.now = T0 + timedelta(seconds=10, milliseconds=1)

    claimed, _ = await asyncio.gather(retry.claim(KEY), time_passes())
    assert claimed


async def test_a_retry_in_the_same_process_waits_for_the_running_turn(database: Database) -> None:
    clock = Clock()
    mine = leases(database, clock, wait=5.0)
    assert await mine.claim(KEY)
    waiting = asyncio.create_task(mine.claim(KEY))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # waits while the turn runs …
    mine.finish(KEY)
    await mine.flush()
    assert await waiting is False  # … and is a duplicate once it finished
    other = "msteams:a:conversation:activity-2"
    assert await mine.claim(other)
    waiting = asyncio.create_task(mine.claim(other))
    await asyncio.sleep(0.05)
    await mine.release(other)  # the turn failed: the waiting retry runs it
    assert await waiting is True


async def test_the_background_writer_finishes_turns_and_close_writes_the_rest(database: Database) -> None:
    clock = Clock()
    mine = leases(database, clock)
    mine.start()
    try:
        assert await mine.claim(KEY)
        mine.finish(KEY)
        for _ in range(100):
            if not mine.held:
                break
            await asyncio.sleep(0.01)
        assert mine.held == frozenset()
        assert await mine.claim("msteams:a:conversation:activity-3")
        mine.finish("msteams:a:conversation:activity-3")
    finally:
        await mine.close()
    store = SqlChannelStore(database.engine)
    for key in (KEY, "msteams:a:conversation:activity-3"):
        lease = await store.inbound_lease("teams", key)
        assert lease is not None and lease.finished


async def test_claims_stored_before_leases_existed_count_as_finished(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    assert await store.claim_inbound("teams", KEY, T0)  # the plain, lease-less claim of earlier versions
    later = T0 + timedelta(days=1)
    assert await store.settle_leases("teams", [KEY], later, later + timedelta(seconds=10), []) == set()
    lease = await store.inbound_lease("teams", KEY)
    assert lease is not None and lease.finished


async def test_one_batch_finishes_and_takes_and_a_key_claimed_twice_in_it_is_taken_once(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    until = T0 + timedelta(seconds=10)
    assert await store.settle_leases("teams", ["a", "b", "a"], T0, until, []) == {"a", "b"}
    assert await store.settle_leases("teams", ["a", "c"], T0, until, ["b"]) == {"c"}  # a: still held
    lease = await store.inbound_lease("teams", "b")
    assert lease is not None and lease.finished
    mine = leases(database, Clock())
    first, second = await asyncio.gather(mine.claim("d"), mine.claim("d"))
    assert sorted([first, second]) == [False, True]


async def test_at_most_limit_turns_run_at_once_and_a_slot_frees_when_a_turn_ends(database: Database) -> None:
    mine = TurnLeases(SqlChannelStore(database.engine), "teams", limit=2, wait=0.2, poll=0.02, clock=Clock())
    assert await mine.claim("k1") and await mine.claim("k2")
    third = asyncio.create_task(mine.claim("k3"))
    await asyncio.sleep(0.1)
    assert not third.done()  # both slots are taken
    mine.finish("k1")
    await asyncio.sleep(0.1)
    assert not third.done()  # finished but not yet written: its reply could still be sent twice after a crash
    await mine.flush()
    assert await third is True
    fourth = asyncio.create_task(mine.claim("k4"))
    await asyncio.sleep(0.1)
    assert not fourth.done()
    await mine.release("k2")
    assert await fourth is True
    assert not await asyncio.wait_for(mine.claim("k1"), 1.0)  # a duplicate never waits for or keeps a slot …
    assert mine.held == {"k3", "k4"}


async def test_a_retry_of_a_finished_turn_is_a_duplicate_at_once_while_every_slot_is_busy(database: Database) -> None:
    mine = TurnLeases(SqlChannelStore(database.engine), "teams", limit=2, wait=5.0, poll=0.02, clock=Clock())
    assert await mine.claim(KEY)
    mine.finish(KEY)
    await mine.flush()
    assert await mine.claim("k1") and await mine.claim("k2")  # every slot busy from here on
    assert await asyncio.wait_for(mine.claim(KEY), 1.0) is False  # never waits for a slot to free
    assert not await asyncio.wait_for(leases(database, Clock()).claim(KEY), 1.0)  # another replica, slots free
    assert mine.held == {"k1", "k2"}


async def test_a_retry_while_another_replica_runs_the_turn_waits_then_is_a_duplicate(database: Database) -> None:
    clock = Clock()
    running = leases(database, clock)
    assert await running.claim(KEY)
    retry = asyncio.create_task(leases(database, clock, wait=5.0).claim(KEY))  # its slots are all free
    await asyncio.sleep(0.1)
    assert not retry.done()  # the turn still runs elsewhere: the retry waits …
    running.finish(KEY)
    await running.flush()
    assert await asyncio.wait_for(retry, 1.0) is False  # … and is a duplicate once it finished


async def test_a_retry_while_another_replica_runs_the_turn_runs_it_if_it_fails(database: Database) -> None:
    clock = Clock()
    running = leases(database, clock)
    assert await running.claim(KEY)
    retry = asyncio.create_task(leases(database, clock, wait=5.0).claim(KEY))
    await asyncio.sleep(0.1)
    assert not retry.done()
    await running.release(KEY)
    assert await asyncio.wait_for(retry, 1.0) is True


async def test_a_new_or_lapsed_activity_is_claimed_in_one_write_without_a_look_first(database: Database) -> None:
    mine = leases(database, Clock())
    with count_statements(database.engine) as count:
        assert await mine.claim(KEY)
    assert (count.writes, count.reads) == (1, 0)
    assert count.statements <= 2  # the upsert (and SQLite's BEGIN IMMEDIATE)
    mine.finish(KEY)
    other = "msteams:a:conversation:activity-2"
    with count_statements(database.engine) as count:
        assert await mine.claim(other)  # and writes the finish of KEY in the same transaction
    assert (count.writes, count.reads) == (1, 0)
    assert mine.held == {other}
    later = leases(database, Clock(T0 + timedelta(seconds=11)))  # `mine` died: its lease on `other` lapsed
    with count_statements(database.engine) as count:
        assert await later.claim(other)
    assert (count.writes, count.reads) == (1, 0)


async def test_a_finished_turn_not_yet_written_hands_its_slot_to_a_new_claim_in_the_same_write(
    database: Database,
) -> None:
    store = SqlChannelStore(database.engine)
    mine = TurnLeases(store, "teams", limit=2, wait=0.2, poll=0.02, clock=Clock())
    assert await mine.claim("k1") and await mine.claim("k2")
    mine.finish("k1")  # every slot busy; k1's frees once its finish is written
    with count_statements(database.engine) as count:
        assert await asyncio.wait_for(mine.claim("k3"), 1.0)
    assert (count.writes, count.reads) == (1, 0)  # k1 finished and k3 taken in one transaction
    assert mine.held == {"k2", "k3"}
    lease = await store.inbound_lease("teams", "k1")
    assert lease is not None and lease.finished
    fourth = asyncio.create_task(mine.claim("k4"))
    await asyncio.sleep(0.1)
    assert not fourth.done()  # still two turns at most: the slot went to k3, not to both
    await mine.release("k2")
    assert await fourth is True
    mine.finish("k3")
    assert not await asyncio.wait_for(mine.claim("k1"), 1.0)  # a duplicate hands nothing over …
    assert await asyncio.wait_for(mine.claim("k5"), 1.0)  # … so k3's slot is free for the next new one
    assert mine.held == {"k4", "k5"}


async def test_claims_waiting_for_a_slot_come_before_a_later_claim_when_a_turn_finishes(database: Database) -> None:
    mine = TurnLeases(SqlChannelStore(database.engine), "teams", limit=1, wait=0.2, poll=0.02, clock=Clock())
    assert await mine.claim("k1")
    second = asyncio.create_task(mine.claim("k2"))
    await asyncio.sleep(0.1)  # k2 looked, found it new, and waits for the slot
    mine.finish("k1")
    third = asyncio.create_task(mine.claim("k3"))
    await asyncio.sleep(0.05)
    await mine.flush()
    assert await asyncio.wait_for(second, 1.0) is True
    await asyncio.sleep(0.1)
    assert not third.done()  # k3 came later: it waits its turn
    await mine.release("k2")
    assert await asyncio.wait_for(third, 1.0) is True


class GatedStore(SqlChannelStore):
    """The real store, whose batch writes wait for the test's go; lease looks are counted."""

    def __init__(self, database: Database) -> None:
        super().__init__(database.engine)
        self.go = asyncio.Event()
        self.looks = 0

    async def settle_leases(
        self, channel: str, take: Sequence[str], now: datetime, until: datetime, finish: Sequence[str]
    ) -> set[str]:
        await self.go.wait()
        return await super().settle_leases(channel, take, now, until, finish)

    async def inbound_lease(self, channel: str, key: str) -> InboundLease | None:
        self.looks += 1
        return await super().inbound_lease(channel, key)


async def test_a_claim_meeting_a_write_that_frees_a_slot_waits_for_that_write_then_takes_it(
    database: Database,
) -> None:
    store = GatedStore(database)
    mine = TurnLeases(store, "teams", limit=1, wait=0.2, poll=0.02, clock=Clock())
    store.go.set()
    assert await mine.claim("k1")
    store.go.clear()
    mine.finish("k1")
    writing = asyncio.create_task(mine.flush())  # k1's finish is being written: the only slot frees after it
    await asyncio.sleep(0.05)
    claim = asyncio.create_task(mine.claim("k2"))
    await asyncio.sleep(0.05)
    assert not claim.done()
    store.go.set()
    assert await asyncio.wait_for(claim, 1.0) is True
    await writing
    assert store.looks == 0  # taken without a look at the stored lease
    assert mine.held == {"k2"}


async def test_one_batch_takes_only_the_new_and_the_lapsed_among_many_keys(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    lapse = timedelta(seconds=10)
    assert await store.settle_leases("teams", ["lapsed", "finished"], T0, T0 + lapse, []) == {"lapsed", "finished"}
    later = T0 + timedelta(seconds=5)
    assert await store.settle_leases("teams", ["held"], later, later + lapse, ["finished"]) == {"held"}
    now = T0 + timedelta(seconds=11)  # `lapsed` lapsed a second ago; `held` runs for 4 more seconds
    keys = ["new", "held", "finished", "lapsed", "x" * 600]
    assert await store.settle_leases("teams", keys, now, now + lapse, []) == {"new", "lapsed", "x" * 600}
    for key, until in [("new", now + lapse), ("lapsed", now + lapse), ("held", later + lapse), ("finished", None)]:
        lease = await store.inbound_lease("teams", key)
        assert lease is not None and lease.until == until, key


async def test_a_claim_cancelled_while_its_take_waits_leaves_nothing_held_here(database: Database) -> None:
    store = GatedStore(database)
    mine = TurnLeases(store, "teams", limit=3, wait=0.2, poll=0.02, clock=Clock())
    first = asyncio.create_task(mine.claim("a"))  # writes the first batch, held up by the gate
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(mine.claim("b"))  # queued for the next batch
    captured = asyncio.create_task(mine.claim("c"))
    await asyncio.sleep(0.05)
    waiting.cancel()  # e.g. the request was dropped before its claim was written
    store.go.set()
    assert await first is True
    await asyncio.sleep(0.05)
    store.go.clear()
    late = asyncio.create_task(mine.claim("d"))  # waits for c's batch, which the gate holds up
    await asyncio.sleep(0.05)
    late.cancel()  # cancelled after its batch began: its lease is written, then lapses (never renewed)
    store.go.set()
    assert await asyncio.wait_for(captured, 1.0) is True
    for task in (waiting, late):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert mine.held == {"a", "c"}  # no cancelled claim is held (and renewed) without a turn
    assert await asyncio.wait_for(mine.claim("e"), 1.0)  # no slot was lost …
    third = asyncio.create_task(mine.claim("f"))
    await asyncio.sleep(0.1)
    assert not third.done()  # … nor made up
    await mine.release("a")
    assert await asyncio.wait_for(third, 1.0)
    assert await store.inbound_lease("teams", "b") is None


class SteppedStore(GatedStore):
    """Each batch write waits for its own go."""

    async def settle_leases(
        self, channel: str, take: Sequence[str], now: datetime, until: datetime, finish: Sequence[str]
    ) -> set[str]:
        await self.go.wait()
        self.go.clear()
        return await SqlChannelStore.settle_leases(self, channel, take, now, until, finish)


async def test_a_claim_cancelled_while_its_batch_is_written_is_not_held_here(database: Database) -> None:
    store = SteppedStore(database)
    mine = TurnLeases(store, "teams", limit=3, wait=0.2, poll=0.02, clock=Clock())
    first = asyncio.create_task(mine.claim("a"))
    await asyncio.sleep(0.05)
    writer, cancelled = asyncio.create_task(mine.claim("d")), asyncio.create_task(mine.claim("g"))
    await asyncio.sleep(0.05)
    store.go.set()  # a's batch; then d's batch (d and g) waits for its go
    assert await first is True
    await asyncio.sleep(0.05)
    cancelled.cancel()  # g's claim is being written
    await asyncio.sleep(0.01)
    store.go.set()
    assert await asyncio.wait_for(writer, 1.0) is True
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert mine.held == {"a", "d"}
    store.go.set()
    assert await asyncio.wait_for(mine.claim("e"), 1.0)  # g's slot came back
    lease = await store.inbound_lease("teams", "g")
    assert lease is not None and lease.until is not None  # written, never renewed: it lapses and is retaken


async def test_a_lease_write_of_one_statement_opens_no_transaction_on_postgres(
    database: Database, postgres_transactions: list[str]
) -> None:
    """A claim alone, a finish alone, a renewal and a release are one statement each: on PostgreSQL they run
    in autocommit (no BEGIN and COMMIT round trips); a claim and a finish written together share one
    transaction, so a finished turn's slot passes to the claim atomically."""
    store = SqlChannelStore(database.engine)
    started = postgres_transactions
    until = T0 + timedelta(seconds=10)
    assert await store.settle_leases("teams", ["a", "b"], T0, until, []) == {"a", "b"}
    await store.renew_inbound("teams", ["a"], until + timedelta(seconds=5))
    await store.release_inbound("teams", "b")
    alone = len(started)
    assert await store.settle_leases("teams", ["c"], T0, until, ["a"]) == {"c"}  # a finish and a claim together
    together = len(started) - alone
    finished, released, taken = [await store.inbound_lease("teams", key) for key in ("a", "b", "c")]
    assert finished is not None and finished.finished
    assert released is None or released.until is None  # retaken at once by the platform's retry
    assert taken is not None and taken.until == until
    postgres = database.engine.dialect.name == "postgresql"
    assert (alone, together) == ((0, 1) if postgres else (0, 0))


async def test_a_claim_of_a_key_the_same_write_finishes_is_not_taken(database: Database) -> None:
    """The finish is written first: a retry claimed in the batch that finishes its turn is a duplicate."""
    store = SqlChannelStore(database.engine)
    until = T0 + timedelta(seconds=10)
    assert await store.settle_leases("teams", ["a"], T0, until, []) == {"a"}
    later = T0 + timedelta(seconds=30)  # a's lease has lapsed by now: only the finish keeps it from a claim
    assert await store.settle_leases("teams", ["a", "b"], later, later + timedelta(seconds=10), ["a"]) == {"b"}
    a, b = await store.inbound_lease("teams", "a"), await store.inbound_lease("teams", "b")
    assert a is not None and a.finished and b is not None and b.until is not None
