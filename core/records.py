"""Stored records that services read and write besides core.types: suggestions, taxonomy versions, drafts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from core.types import EventKind, Source, SuggestionStatus
from tagging.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class SuggestionRecord:
    """A tag proposed for a customer from one message, with its outcome."""

    id: int
    customer_id: int
    message_key: str
    dimension: str
    tag: str
    score: float
    status: SuggestionStatus
    created_at: datetime
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    auto_applied: bool = False
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewSuggestion:
    """A suggestion to store unless its (message key, dimension, tag) exists (bulk ingest)."""

    customer_id: int
    message_key: str
    dimension: str
    tag: str
    score: float
    evidence: Mapping[str, Any]
    created_at: datetime
    status: SuggestionStatus
    auto_applied: bool
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class TaxonomyVersion:
    """One stored revision of the taxonomy (append-only history)."""

    version: int
    taxonomy: Taxonomy
    created_by: str
    created_at: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class CustomerDraft:
    """Customer fields as written by import or an admin; empty strings mean 'not set'."""

    name: str
    company: str = ""
    owner: str = ""
    region: str = ""
    crm_id: str = ""
    wecom_external_userid: str = ""
    contract_end: date | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended to the tag-event log."""

    customer_id: int
    dimension: str
    tag: str
    kind: EventKind
    actor: str
    source: Source
    at: datetime
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    previous: str | None = None
