"""The webhook deliverer: one signed POST per outbox row, bounded by a timeout, answers mapped to retry or fail.

A receiver that hangs or fails only delays its own row: the timeout ends the call, the outbox retries it with
backoff (5xx, 408, 429, network) or keeps it as failed (other 4xx, 410 Gone), and chat never waits on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import aiohttp

from core.alerts.ports import Delivery, DeliveryOutcome, OutboxMessage
from core.rules.webhooks import encode_body, headers
from tagging.rules import Webhook
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

CHANNEL = "webhook"
TIMEOUT_SECONDS = 10.0
RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookDeliverer:
    """Delivers `webhook` outbox rows; URLs and secrets are looked up at send time (taxonomy + environment)."""

    channel = CHANNEL
    resend_is_safe = True  # every call carries its idempotency key: receivers drop a repeat
    per_recipient = True  # each webhook is its own server: the outbox delivers to them side by side

    def __init__(
        self,
        session: aiohttp.ClientSession,
        taxonomy: Callable[[], Taxonomy],
        env: Mapping[str, str],
        timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session = session
        self._taxonomy = taxonomy
        self._env = env
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock

    def url(self, hook: Webhook) -> str | None:
        return resolve_url(hook, self._env)

    async def deliver(self, message: OutboxMessage) -> Delivery:
        hook = self._taxonomy().rules.webhook(message.recipient)
        if hook is None:
            return Delivery(DeliveryOutcome.PERMANENT, f"webhook {message.recipient!r} is no longer in the taxonomy")
        url = self.url(hook)
        if url is None:
            return Delivery(DeliveryOutcome.PERMANENT, f"webhook {hook.name!r} has no URL ({hook.url_env} is not set)")
        secret = self._env.get(hook.secret_env) if hook.secret_env else None
        if hook.secret_env and not secret:
            return Delivery(DeliveryOutcome.RETRY, f"signing secret {hook.secret_env} is not set")
        body = encode_body(dict(message.payload.get("body", {})))
        sent_at = int(self._clock().timestamp())
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers(secret, sent_at, body, message.dedupe_key),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
        except TimeoutError:
            return Delivery(DeliveryOutcome.RETRY, f"no answer within {self._timeout.total:g} s")
        except aiohttp.ClientError as exc:
            return Delivery(DeliveryOutcome.RETRY, f"could not reach the receiver: {type(exc).__name__}")
        if 200 <= status < 300:
            return Delivery(DeliveryOutcome.SENT, external_id=f"HTTP {status}")
        if status >= 500 or status in RETRY_STATUSES:
            return Delivery(DeliveryOutcome.RETRY, f"receiver answered HTTP {status}")
        return Delivery(DeliveryOutcome.PERMANENT, f"receiver answered HTTP {status}")


def resolve_url(hook: Webhook, env: Mapping[str, str]) -> str | None:
    """The webhook's URL: written in the file, or read from its environment variable (None when unset or unsafe)."""
    from tagging.rules import url_problem

    if hook.url is not None:
        return hook.url
    value = env.get(hook.url_env or "", "").strip()
    if not value:
        return None
    if url_problem(value) is not None:
        log.warning("webhook %s: %s=%r refused: %s", hook.name, hook.url_env, value[:80], url_problem(value))
        return None
    return value
