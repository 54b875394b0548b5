"""JSON views of core types for the admin API (plain dicts; datetimes as ISO 8601)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from core.importing.customers import ImportSummary
from core.importing.files import RowProblem
from core.records import TaxonomyVersion
from core.tags.assignments import TagChange
from core.tags.summary import CustomerSummary
from core.taxonomy.store import TaxonomyChange
from core.types import Customer, TagEvent, User
from tagging.loader import Problem, taxonomy_to_data


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "company": c.company,
        "owner": c.owner,
        "region": c.region,
        "crm_id": c.crm_id,
        "wecom_external_userid": c.wecom_external_userid,
        "contract_end": _iso(c.contract_end),
        "attributes": dict(c.attributes),
    }


def summary(s: CustomerSummary) -> dict[str, Any]:
    return {
        "customer": customer(s.customer),
        "count": s.count,
        "over_soft_cap": s.over_soft_cap,
        "dimensions": [
            {
                "key": g.key,
                "name": g.name,
                "tags": [
                    {
                        "name": t.name,
                        "color": t.color,
                        "source": t.source.value,
                        "assigned_by": t.assigned_by,
                        "assigned_at": _iso(t.assigned_at),
                        "expires_at": _iso(t.expires_at),
                        "temporary": t.temporary,
                        "retired": t.retired,
                    }
                    for t in g.tags
                ],
            }
            for g in s.groups
        ],
    }


def event(e: TagEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "dimension": e.dimension,
        "tag": e.tag,
        "kind": e.kind.value,
        "actor": e.actor,
        "source": e.source.value,
        "at": _iso(e.at),
        "evidence": dict(e.evidence),
        "previous": e.previous,
    }


def version_meta(v: TaxonomyVersion, current: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": v.version,
        "created_by": v.created_by,
        "created_at": _iso(v.created_at),
        "note": v.note,
        "dimensions": len(v.taxonomy.dimensions),
        "tags": sum(1 for _ in v.taxonomy.iter_tags()),
    }
    if current is not None:
        out["current"] = v.version == current
    return out


def version(v: TaxonomyVersion) -> dict[str, Any]:
    return {**version_meta(v), "taxonomy": taxonomy_to_data(v.taxonomy)}


def taxonomy_change(change: TaxonomyChange, in_force: bool) -> dict[str, Any]:
    return {
        **version_meta(change.version),
        "in_force": in_force,
        "changed": change.changed,
        "orphaned": [{"dimension": o.dimension, "tag": o.tag, "customers": o.customers} for o in change.orphaned],
    }


def taxonomy_problem(p: Problem) -> dict[str, str]:
    return {"file": p.file, "path": p.path, "where": p.where or p.path, "reason": p.reason}


def row_problem(p: RowProblem) -> dict[str, Any]:
    return {"row": p.row, "column": p.column, "reason": p.reason}


def import_summary(s: ImportSummary, fmt: str, rows: int) -> dict[str, Any]:
    return {
        "dry_run": s.dry_run,
        "format": fmt,
        "rows": rows,
        "created": s.created,
        "updated": s.updated,
        "unchanged": s.unchanged,
        "tags_applied": s.tags_applied,
    }


def tag_change(c: TagChange) -> dict[str, Any]:
    return {
        "dimension": c.dimension,
        "tag": c.tag,
        "outcome": c.outcome,
        "replaced": list(c.replaced),
        "expires_at": _iso(c.expires_at),
        "warnings": list(c.warnings),
    }


def user(u: User) -> dict[str, Any]:
    return {"id": u.id, "role": u.role.value, "regions": list(u.regions), "display_name": u.display_name}
