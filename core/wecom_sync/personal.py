"""Backfill of WeCom personal tags: each agent's own tags on every known external contact, read from WeCom.

Contact add/edit events read them as they happen; this walk reads them for contacts that had no event since
(customers imported with a WeCom id, or known before personal tags existed). For each customer holding a
WeCom external user id, in id order, the contact's details give every follow user's tags of type 2; each
of those agents' WeCom-sourced personal tags on the customer become exactly that list, as an edit event
would make them. Names are checked as elsewhere (empty, too long, personal data: dropped; at most
PERSONAL_CAP). Running it again changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.ports import Store
from core.progress import PhaseCounter, Progress
from core.tags.personal import PersonalSource, PersonalTagStore
from core.types import Customer
from tagging.normaliser import name_key

log = logging.getLogger(__name__)

PAGE = 100  # customers read per query
FAILURES_IN_A_ROW = 5  # contacts failing one after another before the walk gives up (WeCom down, bad secret)


class ContactLookupError(Exception):
    """One contact's details could not be read (the message says why, without secrets)."""


class ContactTags(Protocol):
    """Reads a contact's follow users' own tags from WeCom."""

    async def personal_tags(self, external_userid: str) -> Mapping[str, tuple[str, ...]] | None:
        """{agent userid: their type-2 tag names}, checked; None when WeCom no longer knows the contact.

        Raises ContactLookupError when WeCom cannot say.
        """
        ...


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What one walk did; `next_after` resumes it (`--after`) when it stopped at its limit or gave up."""

    contacts: int = 0
    changed: int = 0  # customers whose personal tags changed
    agents: int = 0  # (customer, agent) pairs whose WeCom-sourced tags were written
    gone: int = 0  # contacts WeCom no longer knows
    failed: int = 0
    next_after: int | None = None
    gave_up: str | None = None


async def backfill_personal_tags(
    store: Store,
    personal: PersonalTagStore,
    source: ContactTags,
    clock: Callable[[], datetime],
    *,
    after: int = 0,
    limit: int | None = None,
    progress: Progress | None = None,
) -> BackfillResult:
    """Walk customers with a WeCom id after customer id `after` (at most `limit`) and fill personal tags."""
    async with store.unit_of_work(read_only=True) as uow:
        total = await uow.customers.count_with_wecom_ids(after)
    counter = PhaseCounter(progress, "contacts", min(total, limit) if limit is not None else total)
    contacts = changed = agents = gone = failed = in_a_row = 0
    last = resume = after
    while limit is None or contacts < limit:
        size = PAGE if limit is None else min(PAGE, limit - contacts)
        async with store.unit_of_work(read_only=True) as uow:
            page = await uow.customers.with_wecom_ids(last, size)
        for customer in page:
            contacts += 1
            counter(1)
            try:
                found = await source.personal_tags(customer.wecom_external_userid or "")
            except ContactLookupError as exc:
                failed += 1
                in_a_row += 1
                resume = last if in_a_row == 1 else resume  # resuming retries the whole failing run
                log.warning("personal tags of customer %d not read: %s", customer.id, exc)
                if in_a_row >= FAILURES_IN_A_ROW:
                    reason = f"{in_a_row} contacts in a row could not be read (last: {exc})"
                    return BackfillResult(contacts, changed, agents, gone, failed, resume, reason)
                last = customer.id
                continue
            in_a_row = 0
            last = customer.id
            if found is None:
                gone += 1
                continue
            written = await _fill(personal, customer, found, clock())
            agents += len(found)
            changed += int(written)
        if len(page) < size:
            return BackfillResult(contacts, changed, agents, gone, failed)
    more = await _more_after(store, last)
    return BackfillResult(contacts, changed, agents, gone, failed, last if more else None)


async def _fill(
    personal: PersonalTagStore, customer: Customer, found: Mapping[str, tuple[str, ...]], now: datetime
) -> bool:
    """Make each agent's WeCom-sourced tags on the customer exactly theirs in WeCom; True when any changed."""
    changed = False
    for author, names in found.items():
        held = await personal.personal_for(customer.id, author)
        mine = {name_key(t.name) for t in held if t.source is PersonalSource.WECOM}
        typed = {name_key(t.name) for t in held if t.source is not PersonalSource.WECOM}
        if mine == {name_key(n) for n in names} - typed:
            continue  # already so (a name the agent also typed stays theirs, not WeCom's)
        await personal.replace_personal_source(customer.id, author, names, PersonalSource.WECOM, now)
        changed = True
    return changed


async def _more_after(store: Store, after: int) -> bool:
    async with store.unit_of_work(read_only=True) as uow:
        return await uow.customers.count_with_wecom_ids(after) > 0
