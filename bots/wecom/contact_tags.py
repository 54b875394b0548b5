"""Each follow user's own tags on an external contact, read through externalcontact/get (for the backfill).

externalcontact/batch/get_by_user is not used: its `follow_info.tag_id` lists corp tags only, never the
agents' own (type 2) tags this reads.
"""

from __future__ import annotations

from collections.abc import Mapping

from bots.wecom.client import WeComApiError, WeComClient
from core.tags.personal import wecom_personal_tags
from core.wecom_sync.personal import ContactLookupError

GONE_ERRCODES = frozenset({84061, 40096})  # not an external contact (any more), invalid external userid


class WeComContactTags:
    """core.wecom_sync.personal.ContactTags over the WeCom API client."""

    def __init__(self, client: WeComClient) -> None:
        self._client = client

    async def personal_tags(self, external_userid: str) -> Mapping[str, tuple[str, ...]] | None:
        """{agent userid: own tag names} of the contact; None when WeCom no longer knows it."""
        try:
            data = await self._client.get_external_contact(external_userid)
        except WeComApiError as exc:
            if exc.errcode in GONE_ERRCODES:
                return None
            raise ContactLookupError(str(exc)) from None
        except ValueError as exc:
            raise ContactLookupError(str(exc)) from None
        return wecom_personal_tags(data.get("follow_user"))
