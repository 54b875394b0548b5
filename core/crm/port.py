"""The CRM port: what a connector (Dynamics 365, Zoho CRM) offers the sync service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol


class CrmError(RuntimeError):
    """A CRM call failed; the one-line message names the connector, the call and the fix."""

    def __init__(self, connector: str, call: str, problem: str, fix: str, *, retryable: bool = False) -> None:
        self.connector, self.call, self.problem, self.fix, self.retryable = connector, call, problem, fix, retryable
        super().__init__(f"{connector} {call}: {problem}; {fix}")


class CrmRecordGone(CrmError):
    """The CRM record no longer exists (deleted, or merged into `merged_into`)."""

    def __init__(self, connector: str, call: str, crm_id: str, merged_into: str | None = None) -> None:
        super().__init__(connector, call, f"record {crm_id} no longer exists", "the customer's CRM link is marked")
        self.crm_id, self.merged_into = crm_id, merged_into


@dataclass(frozen=True, slots=True)
class CrmRef:
    """Where a record lives: its id and kind (account or contact)."""

    crm_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """One account or contact as the CRM has it; `fields` holds the mapped fields' values as text and
    `attributes` the configured basic attributes (industry, size, region, role …) by attribute name."""

    ref: CrmRef
    name: str
    modified_at: datetime | None
    tags: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    deleted: bool = False
    merged_into: str | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tag_ids: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # tag -> the CRM's row id


@dataclass(frozen=True, slots=True)
class TagWrite:
    """Tags to add to and remove from one record, read just before (so the write need not read it again)."""

    record: CrmRecord
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AttributeField:
    """A basic attribute read from the CRM: its name in Kebiao, the record kind ("" = every kind), the field."""

    attribute: str
    kind: str
    field: str


def attribute_fields(fields: Sequence[AttributeField], kind: str) -> dict[str, str]:
    """Attribute name -> CRM field for one record kind (a kind-specific entry wins over an all-kinds one)."""
    out = {f.attribute: f.field for f in fields if not f.kind}
    out.update({f.attribute: f.field for f in fields if f.kind == kind})
    return out


@dataclass(frozen=True, slots=True)
class CrmPage:
    """One page of changed records and the cursor that resumes right after it (`done`: nothing left)."""

    records: tuple[CrmRecord, ...]
    cursor: str
    done: bool


class CrmConnector(Protocol):
    """A CRM: read changed records page by page from a cursor, read and write a record's tags."""

    name: str

    async def check(self, fields: Sequence[str]) -> None:
        """Sign in and verify that every mapped field exists; raises CrmError with the fix."""
        ...

    async def changes(self, cursor: str | None, fields: Sequence[str]) -> CrmPage:
        """The next page of records changed after `cursor` (None: from the beginning, a full sync)."""
        ...

    async def get(self, ref: CrmRef) -> CrmRecord | None:
        """Match one record by its CRM id; None when it no longer exists."""
        ...

    async def write_tags(self, ref: CrmRef, add: Sequence[str], remove: Sequence[str]) -> None:
        """Add and remove tags on one record; raises CrmRecordGone or CrmError."""
        ...

    async def write_many(self, writes: Sequence[TagWrite]) -> list[CrmError | None]:
        """Write several records' tags (batched where the CRM allows); one outcome per write, None = written."""
        ...

    async def close(self) -> None: ...
