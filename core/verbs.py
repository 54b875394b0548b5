"""Card action verbs and the data keys each carries: the contract between cards and the chat service."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

SUGGESTION_ACCEPT = "suggestion.accept"
SUGGESTION_REJECT = "suggestion.reject"
SUGGESTION_ACCEPT_ALL = "suggestion.accept_all"
ASSIGNMENT_UNDO = "assignment.undo"
CUSTOMER_CHOOSE = "customer.choose"
CUSTOMER_SHOW = "customer.show"
SEARCH_PAGE = "search.page"
ALERT_ACK = "alert.ack"
ALERT_SNOOZE = "alert.snooze"
ALERT_DIGEST_ALL = "alert.digest_all"
CHANNEL_LINK = "channel.link"

# Data keys every action of a verb carries, so a handler can check a payload before dispatching it.
DATA_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        SUGGESTION_ACCEPT: ("suggestion_id",),
        SUGGESTION_REJECT: ("suggestion_id",),
        SUGGESTION_ACCEPT_ALL: ("suggestion_ids",),
        ASSIGNMENT_UNDO: ("assignment_id",),
        CUSTOMER_CHOOSE: ("customer_id",),
        CUSTOMER_SHOW: ("customer_id",),
        SEARCH_PAGE: ("query", "page"),
        ALERT_ACK: ("alert_id",),
        ALERT_SNOOZE: ("alert_id", "days"),
        ALERT_DIGEST_ALL: ("alert_id",),
        CHANNEL_LINK: ("channel_id", "customer_id"),
    }
)
ALL_VERBS = frozenset(DATA_KEYS)
SNOOZE_DAYS = 7
