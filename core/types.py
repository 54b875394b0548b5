"""Customer-side types shared by services, storage, cards and channels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Role(StrEnum):
    AGENT = "agent"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def sees_sensitive(self) -> bool:
        """Managers and admins see managers-only dimensions (risk tags)."""
        return self is not Role.AGENT


class Source(StrEnum):
    """Where a tag change came from (design.md section 5)."""

    MANUAL = "manual"
    KEYWORD = "keyword"
    RULE = "rule"
    IMPORT = "import"
    SYNC = "sync"
    CHANNEL = "channel"


class AssignmentState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REMOVED = "removed"


class EventKind(StrEnum):
    """What happened to an assignment."""

    ADDED = "added"
    REMOVED = "removed"
    EXPIRED = "expired"
    REPLACED = "replaced"  # an exclusive dimension's old tag made way for a new one
    RENEWED = "renewed"  # re-applying an active tag extends its expiry


class SuggestionStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class User:
    """A person using Kebiao, keyed by platform user id (Teams AAD object id or WeCom userid)."""

    id: str
    role: Role = Role.AGENT
    regions: tuple[str, ...] = ()
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    name: str
    company: str = ""
    owner: str = ""
    region: str = ""
    crm_id: str = ""
    wecom_external_userid: str = ""
    contract_end: date | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Assignment:
    """A tag held (or once held) by a customer."""

    id: int
    customer_id: int
    dimension: str
    tag: str
    state: AssignmentState
    source: Source
    assigned_by: str
    assigned_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TagEvent:
    """One append-only entry of a customer's tag history."""

    id: int
    customer_id: int
    dimension: str
    tag: str
    kind: EventKind
    actor: str
    source: Source
    at: datetime
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    previous: str | None = None
