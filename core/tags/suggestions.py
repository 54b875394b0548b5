"""Suggesting tags from a message (auto-apply or store as pending) and deciding suggestions, idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.errors import NotFoundError
from core.ports import UnitOfWork
from core.records import NewSuggestion, SuggestionRecord
from core.tags.assignments import TagChange, TaggingRules, apply_definition, clean_evidence
from core.types import Customer, Source, SuggestionStatus
from tagging.policy import PolicyRefusal, find_tag
from tagging.regions import in_scope
from tagging.suggestion import Suggestion
from tagging.taxonomy import Dimension, TagDef, Taxonomy

AUTO_ACTOR = "kebiao"


class SuggestionSource(Protocol):
    """The matcher as this service needs it."""

    def suggest(self, text: str) -> Sequence[Suggestion]: ...


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What one message did: tags applied automatically, suggestions awaiting a click, refusals."""

    applied: tuple[TagChange, ...]
    pending: tuple[SuggestionRecord, ...]
    refused: tuple[str, ...] = ()
    duplicate: bool = False  # the message key was seen before: nothing new happened
    customer: Customer | None = None  # the customer as read in the same transaction
    applied_matched: tuple[tuple[str, ...], ...] = ()  # the words matched for each of `applied`, in order


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of accept/reject; `already` is True when someone had decided before (who/when inside)."""

    suggestion: SuggestionRecord
    already: bool
    change: TagChange | None = None


async def suggest_for_message(
    uow: UnitOfWork,
    matcher: SuggestionSource,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    customer_id: int,
    message_key: str,
    text: str,
    now: datetime,
) -> MessageOutcome:
    """Run the matcher; apply `apply` tags and store `suggest` ones, once per (message key, tag)."""
    return await store_suggestions(
        uow, matcher.suggest(text), taxonomy, rules, customer_id, message_key, now
    )


@dataclass(frozen=True, slots=True)
class PlannedSuggestion:
    """A matched suggestion in the customer's scope, with the row it is stored as."""

    suggestion: Suggestion
    dimension: Dimension
    tag: TagDef
    row: NewSuggestion

    @property
    def auto(self) -> bool:
        return self.row.auto_applied


def applies_itself(s: Suggestion) -> bool:
    """An `apply` tag matched by keyword is applied at once; a learned suggestion never is."""
    return s.action == "apply" and s.source == "keyword"


def planned_suggestions(
    suggestions: Sequence[Suggestion],
    taxonomy: Taxonomy,
    customer: Customer,
    message_key: str,
    now: datetime,
) -> list[PlannedSuggestion]:
    """The rows a message's suggestions are stored as; a regional tag outside the customer's region is left out."""
    planned: list[PlannedSuggestion] = []
    for s in suggestions:
        dimension, tag = find_tag(taxonomy, s.tag, s.dimension)
        if not in_scope(dimension, tag, customer.region):
            continue  # a regional tag is neither suggested nor applied for customers of other regions
        auto = applies_itself(s)
        evidence = clean_evidence({"matched": list(s.matched), "excerpt": s.excerpt})
        if s.source != "keyword":
            evidence["source"] = s.source  # the card says where a learned suggestion came from
        row = NewSuggestion(
            customer_id=customer.id,
            message_key=message_key,
            dimension=dimension.key,
            tag=tag.name,
            score=s.score,
            evidence=evidence,
            created_at=now,
            status=SuggestionStatus.ACCEPTED if auto else SuggestionStatus.PENDING,
            auto_applied=auto,
            decided_by=AUTO_ACTOR if auto else None,
        )
        planned.append(PlannedSuggestion(s, dimension, tag, row))
    return planned


async def store_suggestions(
    uow: UnitOfWork,
    suggestions: Sequence[Suggestion],
    taxonomy: Taxonomy,
    rules: TaggingRules,
    customer_id: int,
    message_key: str,
    now: datetime,
    customer: Customer | None = None,
) -> MessageOutcome:
    """Apply `apply` tags and store `suggest` ones of a matched message, once per (message key, tag).

    The matching is done before (it is CPU work: never inside a write transaction, which on SQLite holds the
    single writer while it runs). `customer`: the customer as the caller has it (read here when not given).
    """
    if customer is None:
        customer = await uow.customers.get(customer_id)
        if customer is None:
            raise NotFoundError(f"customer {customer_id} does not exist")
    applied: list[TagChange] = []
    applied_matched: list[tuple[str, ...]] = []
    pending: list[SuggestionRecord] = []
    refused: list[str] = []
    new_rows = 0
    for p in planned_suggestions(suggestions, taxonomy, customer, message_key, now):
        r = p.row
        # The unique (message key, tag) row is the gate: a retried message inserts and applies nothing.
        row = await uow.suggestions.add_if_absent(
            customer_id, message_key, r.dimension, r.tag, r.score, r.evidence, now, r.status, r.auto_applied,
            r.decided_by,
        )
        if row is None:
            continue
        new_rows += 1
        if not p.auto:
            pending.append(row)
            continue
        try:
            applied.append(
                await apply_definition(
                    uow,
                    p.dimension,
                    p.tag,
                    rules,
                    customer_id,
                    actor=AUTO_ACTOR,
                    source=Source.KEYWORD,
                    now=now,
                    evidence=dict(r.evidence, message_key=message_key, score=r.score),
                    customer=customer,
                )
            )
            applied_matched.append(tuple(p.suggestion.matched))
        except PolicyRefusal as refusal:
            refused.append(refusal.reason)
    duplicate = new_rows == 0 and bool(await uow.suggestions.for_message(message_key))
    return MessageOutcome(
        tuple(applied), tuple(pending), tuple(refused), duplicate, customer, tuple(applied_matched)
    )


async def decide_suggestion(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    suggestion_id: int,
    *,
    accept: bool,
    actor: str,
    now: datetime,
) -> Decision:
    """Accept (applies the tag) or reject a pending suggestion; a second click gets the earlier decision."""
    record = await uow.suggestions.get(suggestion_id)
    if record is None:
        raise NotFoundError(f"suggestion {suggestion_id} does not exist")
    status = SuggestionStatus.ACCEPTED if accept else SuggestionStatus.REJECTED
    # Claim the decision first (UPDATE … WHERE pending): of two racing clicks exactly one wins; the other
    # gets the winner's who/when. A policy refusal below raises and rolls the claim back with everything else.
    if record.status is not SuggestionStatus.PENDING or not await uow.suggestions.decide(record.id, status, actor, now):
        latest = await uow.suggestions.get(record.id)
        return Decision(latest or record, already=True)
    change = None
    if accept:
        dimension, tag = find_tag(taxonomy, record.tag, record.dimension)
        evidence = dict(record.evidence, suggestion_id=record.id, score=record.score)
        change = await apply_definition(
            uow,
            dimension,
            tag,
            rules,
            record.customer_id,
            actor=actor,
            source=Source.KEYWORD,
            now=now,
            evidence=evidence,
        )
    latest = await uow.suggestions.get(record.id)
    return Decision(latest or record, already=False, change=change)
