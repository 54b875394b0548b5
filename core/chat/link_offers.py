"""Signed channel-link offers: the Link button's data carries an HMAC binding channel, customer, team and expiry.

Pure: the key and `now` come from the caller. A click whose data was forged or altered (any bound field, or a
signature made under another key) is refused; a genuine one from outside its team or past its expiry is too,
each with its own reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

OFFER_DAYS = 14  # how long a Link button works after the channel was created or renamed
_VERSION = "kebiao-channel-link-v1"
_MAX_FIELD = 500

Refusal = Literal["forged", "expired", "elsewhere"]


@dataclass(frozen=True, slots=True)
class OfferSeal:
    """What the Link button carries besides channel and customer: the team, the expiry and the signature."""

    team_id: str
    expires: int  # POSIX seconds
    signature: str

    def data(self) -> dict[str, str | int]:
        """The seal as card action data."""
        return {"team_id": self.team_id, "expires": self.expires, "sig": self.signature}


def _mac(key: bytes, channel_id: str, customer_id: int, team_id: str, expires: int) -> str:
    message = "\n".join((_VERSION, channel_id, str(customer_id), team_id, str(expires)))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def seal_offer(key: bytes, channel_id: str, customer_id: int, team_id: str, now: datetime) -> OfferSeal:
    """Sign an offer to link `channel_id` (of `team_id`) to `customer_id`, valid for OFFER_DAYS from `now`."""
    expires = int((now + timedelta(days=OFFER_DAYS)).timestamp())
    return OfferSeal(team_id, expires, _mac(key, channel_id, customer_id, team_id, expires))


def check_seal(
    key: bytes, data: Mapping[str, object], channel_id: str, customer_id: int, click_team: str, now: datetime
) -> Refusal | None:
    """Why a click on a Link button must be refused (None: it is genuine, in its team and in time)."""
    team_id, expires, signature = data.get("team_id"), data.get("expires"), data.get("sig")
    if isinstance(expires, str) and expires.isascii() and expires.isdigit() and len(expires) < 20:
        expires = int(expires)
    if (
        not isinstance(team_id, str)
        or not isinstance(signature, str)
        or isinstance(expires, bool)
        or not isinstance(expires, int)
        or len(team_id) > _MAX_FIELD
        or len(signature) > _MAX_FIELD
    ):
        return "forged"
    expected = _mac(key, channel_id, customer_id, team_id, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        return "forged"
    if now.timestamp() > expires:
        return "expired"
    if not click_team or not hmac.compare_digest(click_team.encode("utf-8"), team_id.encode("utf-8")):
        return "elsewhere"
    return None


def expired_on(data: Mapping[str, object]) -> int:
    """The expiry a (genuine) seal carries, as POSIX seconds."""
    expires = data.get("expires")
    return int(expires) if isinstance(expires, int | str) else 0
