"""Plain-text renderings for the terminal (the CLI's `customers show`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from core.tags.summary import CustomerSummary
from core.types import TagEvent


def _local(moment: datetime, tz: ZoneInfo) -> str:
    """A stored (UTC) time in the configured zone, with the zone's name so nobody mistakes it for UTC."""
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}"


def who_did(event: TagEvent) -> str:
    """'by 张伟 via teams'; just 'via import' when the actor is the source itself (no 'by import via import')."""
    source = event.source.value
    if not event.actor or event.actor == source:
        return f"via {source}"
    return f"by {event.actor} via {source}"


def render_customer_text(summary: CustomerSummary, events: Sequence[TagEvent], tz: ZoneInfo) -> str:
    """A customer's tags by dimension, then the newest events, one per line; times in `tz`."""
    c = summary.customer
    head = f"{c.name} (#{c.id})"
    facts = [f for f in (c.company, c.region and f"region {c.region}", c.owner and f"owner {c.owner}") if f]
    if c.contract_end:
        facts.append(f"contract ends {c.contract_end.isoformat()}")
    lines = [head + (" — " + ", ".join(facts) if facts else "")]
    if c.attributes:
        lines.append("  " + ", ".join(f"{key}: {value}" for key, value in sorted(c.attributes.items())))
    if not summary.groups:
        lines.append("  (no tags)")
    for group in summary.groups:
        tags = []
        for tag in group.tags:
            note = f" until {_local(tag.expires_at, tz)}" if tag.expires_at else ""
            note += " (retired)" if tag.retired else ""
            note += f" [{tag.reason}]" if tag.reason else ""
            tags.append(tag.name + note)
        lines.append(f"  {group.name}: " + ", ".join(tags))
    if summary.over_soft_cap:
        lines.append(f"  note: {summary.count} active tags; consider retiring some")
    if events:
        lines.append("history (newest first):")
        for e in events:
            previous = f" (was {e.previous})" if e.previous else ""
            who = who_did(e)
            why = e.evidence.get("note") if e.actor.startswith("rule:") else None
            reason = f" — {why}" if isinstance(why, str) else ""
            lines.append(f"  {_local(e.at, tz)} {e.kind.value:<8} {e.tag}{previous} {who}{reason}")
    return "\n".join(lines)
