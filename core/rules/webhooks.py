"""Webhook signing (documented in docs/rules.md) and the failed-delivery list: pure helpers and one service."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.alerts.ports import OutboxMessage, OutboxState
from core.errors import NotFoundError
from core.rules.ports import RulesStore

SIGNATURE_HEADER = "Kebiao-Signature"
TIMESTAMP_HEADER = "Kebiao-Timestamp"
IDEMPOTENCY_HEADER = "Kebiao-Idempotency-Key"
SCHEME = "v1"


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (UTF-8 JSON); the signature covers these bytes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `<timestamp>.<body>` under the secret."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def headers(secret: str | None, timestamp: int, body: bytes, idempotency_key: str) -> dict[str, str]:
    """Every header of a webhook call (no signature when the webhook has no secret)."""
    out = {
        "Content-Type": "application/json; charset=utf-8",
        TIMESTAMP_HEADER: str(timestamp),
        IDEMPOTENCY_HEADER: idempotency_key,
        "User-Agent": "Kebiao-Webhook/1",
    }
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return out


def verify(secret: str, timestamp: str, body: bytes, header: str, now: datetime, tolerance: int = 300) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps (replays)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)


async def failed_webhooks(store: RulesStore, limit: int = 1000) -> list[OutboxMessage]:
    """Webhook calls that failed for good (kept, newest last)."""
    async with store.unit_of_work() as uow:
        return await uow.webhooks.failed(limit)


async def resend_webhook(store: RulesStore, message_id: int, now: datetime, by: str) -> OutboxMessage:
    """Put a failed webhook call back in the outbox (same idempotency key): it is sent at the next drain."""
    async with store.unit_of_work() as uow:
        message = await uow.outbox.get(message_id)
        if message is None or message.channel != "webhook":
            raise NotFoundError(f"webhook call {message_id} does not exist (see `kebiao webhooks failed`)")
        if message.state is not OutboxState.FAILED:
            raise ValueError(f"webhook call {message_id} is {message.state.value}; only a failed call can be resent")
        await uow.webhooks.requeue(message_id, now, f"resend requested by {by} at {now.isoformat()}")
    return message
