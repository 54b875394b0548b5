"""Chat-archive ingest: WeCom 会话内容存档 exports (decrypted JSONL) into suggestions and auto-applied tags.

One JSON object per line: msgid, from, tolist, roomid, msgtime (ms), msgtype and text.content. Only text
messages whose sender is an external user id (`wm…`/`wo…`) of a known customer are matched. Every message is
keyed `wecom:<msgid>`, so re-running a file changes nothing; a checkpoint (byte offset and line number after
the last committed batch, plus the file's size, mtime and a hash of its first 64 KiB) lets `--resume` skip
what is done, and refuses to resume a file that changed since (its offsets would point elsewhere). Each batch
is one transaction of a few set-based statements (customers by external id, suggestions, `apply_many` for auto
tags, events), which also records each speaking customer's latest message time for the churn signals
(customer_activity). Bad lines are reported with their line number and skipped; the run goes on and the caller
decides the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from core.alerts.ports import AlertStore, AlertUnitOfWork
from core.learning.capture import masked as masked_text
from core.learning.ports import LearningStore, MessageText
from core.records import NewSuggestion
from core.tags.assignments import ApplyItem, TaggingRules, apply_many, clean_evidence
from core.tags.suggestions import AUTO_ACTOR
from core.types import Source, SuggestionStatus
from tagging.normaliser import name_key
from tagging.policy import PolicyRefusal, UnknownTagError, find_tag
from tagging.suggestion import Suggestion
from tagging.taxonomy import Dimension, TagDef, Taxonomy

log = logging.getLogger(__name__)

EXTERNAL_PREFIXES = ("wm", "wo")
ACTIVITY_CHANNEL = "wecom"
BATCH_LINES = 5000  # lines per transaction and checkpoint: fewer round trips, bounded memory and lock time
CHECKPOINT_SUFFIX = ".kebiao-checkpoint"
HEAD_BYTES = 64 * 1024  # hashed to recognise the file a checkpoint was written for

Progress = Callable[[int, int, int], None]  # bytes done, total bytes, lines done


class CheckpointError(ValueError):
    """The checkpoint does not belong to this file (or is unreadable); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ArchiveMessage:
    """One archived chat message, as far as ingest needs it."""

    msgid: str
    sender: str
    msgtype: str
    text: str
    at: datetime


@dataclass(slots=True)
class IngestSummary:
    """Counts for the final report; `bad` holds 'line N: reason' for every refused line."""

    lines: int = 0
    customer_messages: int = 0
    applied: int = 0
    suggested: int = 0
    duplicates: int = 0
    unknown_customers: int = 0
    skipped: int = 0
    resumed_from_line: int = 0
    bad: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.lines} lines read (from line {self.resumed_from_line + 1}): {self.customer_messages} customer "
            f"messages, {self.applied} tags applied, {self.suggested} suggestions, {self.duplicates} already "
            f"ingested, {self.unknown_customers} from unknown customers, {self.skipped} other messages skipped, "
            f"{len(self.bad)} bad lines"
        )


class BadLine(ValueError):
    """A line that is not a usable archive record."""


def is_external_user(user_id: str) -> bool:
    """External (customer) user ids start with wm or wo; members' userids do not."""
    return user_id.startswith(EXTERNAL_PREFIXES)


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_MSGID = 200  # stored as `wecom:<msgid>` in a 300-character column
MAX_SENDER = 200
# The latest msgtime accepted (year 9999); anything later is not a time a chat message was sent.
MAX_MSGTIME = 253_402_300_799_999


def parse_archive_line(raw: bytes) -> ArchiveMessage | None:
    """One JSONL line as a message; None for a blank line; BadLine says what is wrong.

    Every way a line can be unusable ends in BadLine (never another exception), so a caller can report it
    with its line number, skip it and keep the rest of the batch.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise BadLine("JSON nested too deeply") from None
    except ValueError as exc:  # the interpreter's limit on very long integers
        raise BadLine(f"unreadable JSON value ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise BadLine("expected a JSON object")
    for name, limit in (("msgid", MAX_MSGID), ("from", MAX_SENDER), ("msgtype", 50)):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise BadLine(f"field '{name}' is missing or not a non-empty string")
        if len(value) > limit:
            raise BadLine(f"field '{name}' is {len(value)} characters long (limit {limit})")
        _check_text(name, value)
    msgtime = data.get("msgtime")
    if not isinstance(msgtime, int) or isinstance(msgtime, bool) or not 0 <= msgtime <= MAX_MSGTIME:
        raise BadLine("field 'msgtime' must be an integer from 0 to 253402300799999 (milliseconds since 1970)")
    content = ""
    if data["msgtype"] == "text":
        body = data.get("text")
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise BadLine("text message without a string 'text.content'")
        content = body["content"]
        _check_text("text.content", content)
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=msgtime)
    return ArchiveMessage(data["msgid"], data["from"], data["msgtype"], content, at)


def _check_text(name: str, value: str) -> None:
    """Refuse text no database column can hold: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise BadLine(f"field '{name}' contains a NUL character")
    if _SURROGATE.search(value):
        raise BadLine(f"field '{name}' contains an unpaired surrogate (\\ud800-\\udfff)")


def checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKPOINT_SUFFIX)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What a checkpoint remembers of its file: a replaced or edited file differs in at least one of these."""

    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Size, modification time and the sha256 of the first HEAD_BYTES bytes of `path`."""
        stat = path.stat()
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
        return cls(stat.st_size, stat.st_mtime_ns, hashlib.sha256(head).hexdigest())

    def differences(self, other: FileIdentity) -> list[str]:
        """Human descriptions of what differs from `other` (the checkpoint's view)."""
        out = []
        if self.size != other.size:
            out.append(f"size {other.size} -> {self.size} bytes")
        if self.mtime_ns != other.mtime_ns:
            out.append("modification time")
        if self.head_sha256 != other.head_sha256:
            out.append(f"content of the first {HEAD_BYTES // 1024} KiB")
        return out


_START_OVER = "delete the checkpoint to start over (ingest is idempotent by msgid, nothing is applied twice)"


def _read_checkpoint(path: Path, identity: FileIdentity) -> tuple[int, int]:
    """(byte offset, line number) to resume from; refuses a checkpoint written for a different file state."""
    cp = checkpoint_path(path)
    if not cp.exists():
        return 0, 0
    try:
        data = json.loads(cp.read_text(encoding="utf-8"))
        offset, line = int(data["offset"]), int(data["line"])
        saved = data.get("identity")
        known = None if saved is None else FileIdentity(int(saved["size"]), int(saved["mtime_ns"]), str(saved["head"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{cp}: unreadable checkpoint ({exc}); delete it to start over") from None
    if known is None:
        raise CheckpointError(
            f"{cp}: the checkpoint does not record which file it belongs to (written by an older version); "
            + _START_OVER
        )
    changed = identity.differences(known)
    if changed:
        raise CheckpointError(
            f"{cp}: {path} changed since the checkpoint was written ({', '.join(changed)}); resuming would skip "
            f"or misread lines — {_START_OVER}"
        )
    if not 0 <= offset <= identity.size:
        raise CheckpointError(
            f"{cp}: checkpoint offset {offset} is past the end of {path} ({identity.size} bytes); " + _START_OVER
        )
    return offset, line


def _write_checkpoint(path: Path, offset: int, line: int, identity: FileIdentity) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a checkpoint."""
    cp = checkpoint_path(path)
    tmp = cp.with_name(cp.name + ".tmp")
    record = {
        "offset": offset,
        "line": line,
        "file": path.name,
        "identity": {"size": identity.size, "mtime_ns": identity.mtime_ns, "head": identity.head_sha256},
    }
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, cp)


class BatchSource(Protocol):
    """The suggestion source as ingest needs it: the keyword matcher, or the one merged with the learned model."""

    def suggest_many(self, texts: Sequence[str]) -> Sequence[Sequence[Suggestion]]: ...


async def ingest_archive(
    store: AlertStore,
    taxonomy: Taxonomy,
    matcher: BatchSource,
    rules: TaggingRules,
    path: Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    batch_lines: int = BATCH_LINES,
    learning: LearningStore | None = None,
) -> IngestSummary:
    """Ingest an archive file; each batch is matched in memory, then one transaction, then a checkpoint.

    With `learning`, the masked text of each message that raised suggestions is kept, so that a later
    accept or reject of those suggestions becomes a training example.
    """
    identity = FileIdentity.of(path)
    size = identity.size
    offset, line_no = _read_checkpoint(path, identity) if resume else (0, 0)
    summary = IngestSummary(resumed_from_line=line_no)
    customers: dict[str, int | None] = {}

    async def store_and_checkpoint(matched: list[_Matched], end: int, last_line: int, lines: int) -> None:
        if matched:
            async with store.unit_of_work() as uow:
                owners = await _store_batch(uow, rules, matched, customers, summary)
            if learning is not None and owners:
                texts = [
                    MessageText(
                        f"wecom:{m.message.msgid}", "wecom", m.message.sender, c, masked_text(m.message.text), m.at
                    )
                    for m, c in owners
                ]
                await learning.remember_messages(texts)
        summary.lines += lines
        _write_checkpoint(path, end, last_line, identity)
        if progress is not None:
            progress(end, size, last_line)

    # Batch N is written while batch N+1 is parsed and matched, so the database's time overlaps the
    # matcher's; batches are still stored, and checkpointed, strictly in file order.
    writing: asyncio.Task[None] | None = None
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            while batch := _read_batch(stream, batch_lines):
                matched = await _match_batch(batch, line_no, taxonomy, matcher, summary, now())
                line_no += len(batch)
                offset += sum(len(raw) for raw in batch)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(store_and_checkpoint(matched, offset, line_no, len(batch)))
            if writing is not None:
                await writing
                writing = None
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
    return summary


@dataclass(frozen=True, slots=True)
class _Matched:
    """A customer's text message with its resolved suggestions (pure work done, database work pending)."""

    line_no: int
    message: ArchiveMessage
    at: datetime
    tags: tuple[tuple[Dimension, TagDef, Suggestion], ...]


YIELD_EVERY = 100  # lines matched between chances for the previous batch's write to move on


async def _match_batch(
    batch: Sequence[bytes],
    first_line: int,
    taxonomy: Taxonomy,
    matcher: BatchSource,
    summary: IngestSummary,
    wall_now: datetime,
) -> list[_Matched]:
    """Parse and match every line in pure code; only customer lines with tags go on to the database.

    Lines are matched a group at a time (one `suggest_many`, so a learned model reads the group in one pass);
    problems are reported in line order.
    """
    out: list[_Matched] = []
    resolved: dict[tuple[str, str], tuple[Dimension, TagDef]] = {}
    for begin in range(0, len(batch), YIELD_EVERY):
        if begin:
            await asyncio.sleep(0)
        parsed: list[tuple[int, ArchiveMessage | str]] = []  # (line number, a customer's message or a problem)
        for index, raw in enumerate(batch[begin : begin + YIELD_EVERY], start=begin):
            line_no = first_line + index + 1
            try:
                message = parse_archive_line(raw)
            except BadLine as exc:
                parsed.append((line_no, str(exc)))
                continue
            if message is None:
                continue
            if message.msgtype != "text" or not is_external_user(message.sender) or not message.text.strip():
                summary.skipped += 1
                continue
            summary.customer_messages += 1
            parsed.append((line_no, message))
        found = iter(matcher.suggest_many([m.text for _, m in parsed if isinstance(m, ArchiveMessage)]))
        for line_no, item in parsed:
            if isinstance(item, str):
                summary.bad.append(f"line {line_no}: {item}")
                continue
            suggestions = next(found)
            try:
                tags = tuple((*_resolve(taxonomy, s, resolved), s) for s in suggestions)
            except UnknownTagError as exc:
                summary.bad.append(f"line {line_no}: {exc}")
                continue
            at = min(item.at, wall_now)  # a clock-skewed future msgtime must not push expiries ahead
            out.append(_Matched(line_no, item, at, tags))
    return out


def _resolve(
    taxonomy: Taxonomy, s: Suggestion, cache: dict[tuple[str, str], tuple[Dimension, TagDef]]
) -> tuple[Dimension, TagDef]:
    """find_tag, remembered per batch (the matcher names the same few tags over and over)."""
    key = (s.dimension, s.tag)
    if key not in cache:
        cache[key] = find_tag(taxonomy, s.tag, s.dimension)
    return cache[key]


async def _store_batch(
    uow: AlertUnitOfWork,
    rules: TaggingRules,
    matched: Sequence[_Matched],
    customers: dict[str, int | None],
    summary: IngestSummary,
) -> list[tuple[_Matched, int]]:
    """One batch, one transaction, a handful of statements: customers, suggestions, tags, events, activity.

    Returns the messages that raised suggestions, with their customer ids.
    """
    unknown = sorted({m.message.sender for m in matched} - customers.keys())
    if unknown:
        found = await uow.customers.find_by_external_ids(unknown)
        customers.update({sender: found[sender].id if sender in found else None for sender in unknown})
    rows: list[NewSuggestion] = []
    owners: list[tuple[_Matched, int]] = []
    last_at: dict[int, datetime] = {}
    seen: set[str] = set()
    masked: dict[str, str] = {}
    for item in matched:
        customer_id = customers[item.message.sender]
        if customer_id is None:
            summary.unknown_customers += 1
            continue
        last_at[customer_id] = max(item.at, last_at.get(customer_id, item.at))
        if not item.tags:
            continue
        key = f"wecom:{item.message.msgid}"
        if key in seen:  # the same msgid twice in one batch: the second is a duplicate
            summary.duplicates += 1
            continue
        seen.add(key)
        owners.append((item, customer_id))
        for dimension, tag, s in item.tags:
            auto = s.action == "apply" and s.source == "keyword"  # a learned suggestion is never auto-applied
            evidence: dict[str, object] = {"matched": list(s.matched), "excerpt": _masked(s.excerpt, masked)}
            if s.source != "keyword":
                evidence["source"] = s.source
            rows.append(
                NewSuggestion(
                    customer_id,
                    key,
                    dimension.key,
                    tag.name,
                    s.score,
                    evidence,
                    item.at,
                    SuggestionStatus.ACCEPTED if auto else SuggestionStatus.PENDING,
                    auto,
                    AUTO_ACTOR if auto else None,
                )
            )
    # The unique (message key, dimension, tag) rows are the gate: a re-run inserts and applies nothing.
    inserted = await uow.suggestions.insert_new(rows)
    fresh = {k: r for r in rows if (k := (r.message_key, r.dimension, name_key(r.tag))) in inserted}
    applying: list[tuple[int, ApplyItem]] = []
    for item, customer_id in owners:
        key = f"wecom:{item.message.msgid}"
        new = 0
        for dimension, tag, s in item.tags:
            record = fresh.get((key, dimension.key, name_key(tag.name)))
            if record is None:
                continue
            new += 1
            if not record.auto_applied:
                summary.suggested += 1
                continue
            # record.evidence's excerpt went through clean_evidence above (_masked); the added keys are not text.
            evidence = dict(record.evidence, message_key=key, score=s.score)
            to_apply = ApplyItem(customer_id, dimension, tag, item.at, evidence, evidence_masked=True)
            applying.append((item.line_no, to_apply))
        summary.duplicates += int(new == 0)
    outcomes = await apply_many(uow, [a for _, a in applying], rules, actor=AUTO_ACTOR, source=Source.KEYWORD)
    for (line_no, applied), outcome in zip(applying, outcomes, strict=True):
        if isinstance(outcome, PolicyRefusal):
            # A cap refusal is policy working, not bad data: the suggestion row stays.
            log.info("line %d: auto tag %s not applied: %s", line_no, applied.tag.name, outcome.reason)
        else:
            summary.applied += 1
    await uow.activity.record_messages(last_at, ACTIVITY_CHANNEL)
    return owners


def _masked(excerpt: str, cache: dict[str, str]) -> str:
    """The excerpt as clean_evidence stores it, masked once per batch (a message's tags share one excerpt)."""
    if excerpt not in cache:
        cache[excerpt] = clean_evidence({"excerpt": excerpt})["excerpt"]
    return cache[excerpt]


def _read_batch(stream: BinaryIO, limit: int) -> list[bytes]:
    batch: list[bytes] = []
    while len(batch) < limit:
        raw = stream.readline()
        if not raw:
            break
        batch.append(raw)
    return batch
