"""Tagging policy (pure, takes `now`): exclusivity, caps, expiry, visibility, PII refusal, tag lookup."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from tagging.normaliser import name_key
from tagging.pii import contains_pii
from tagging.regions import in_scope, scope_refusal, tag_scope
from tagging.taxonomy import Dimension, TagDef, Taxonomy, Visibility

SOFT_CAP = 20
DEFAULT_HARD_CAP = 100
TEMPORARY_TTL_DAYS = 1  # a tag with ttl_days: 1 is a "today" tag (今日已联系): it lapses at local midnight


class PolicyRefusal(ValueError):
    """A tag change the policy does not allow; `reason` is shown to the user as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CapRefusal(PolicyRefusal):
    """The customer is at the hard cap. `reason` counts every tag, managers-only ones included, so it is for
    managers; `hidden_reason()` is the wording for viewers who cannot see sensitive tags (no numbers)."""

    def __init__(self, tag_name: str, held: int, cap: int) -> None:
        super().__init__(
            f"客户已有 {held} 个标签，已达上限 {cap}，不能再添加「{tag_name}」；"
            "请先移除不再需要的标签 (the customer is at the hard cap of active tags)"
        )
        self.tag_name = tag_name
        self.held = held
        self.cap = cap

    def hidden_reason(self) -> tuple[str, str]:
        """(Chinese, English) refusal that reveals nothing about tags the viewer cannot see."""
        return (
            f"这个客户的标签已达上限，不能再添加「{self.tag_name}」；请联系主管整理",
            f"this customer has reached the tag limit, so 「{self.tag_name}」 cannot be added; "
            "ask a manager to tidy up its tags",
        )


_SOFT_CAP_PREFIX = "客户已有 "
_SOFT_CAP_SUFFIX = f" 个标签（建议不超过 {SOFT_CAP} 个），请考虑清理"


def soft_cap_warning(count: int) -> str | None:
    """The warning for a customer holding `count` active tags, or None below the soft cap."""
    if count < SOFT_CAP:
        return None
    return f"{_SOFT_CAP_PREFIX}{count}{_SOFT_CAP_SUFFIX}"


def is_soft_cap_warning(text: str) -> bool:
    """True for a warning made by soft_cap_warning (a caller re-counts it for a restricted viewer)."""
    middle = text.removeprefix(_SOFT_CAP_PREFIX).removesuffix(_SOFT_CAP_SUFFIX)
    return text.startswith(_SOFT_CAP_PREFIX) and text.endswith(_SOFT_CAP_SUFFIX) and middle.isdigit()


class UnknownTagError(LookupError):
    """No tag of that name (in that dimension); `close` lists the nearest names the user may have meant."""

    def __init__(self, name: str, close: Sequence[str]) -> None:
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        super().__init__(f"unknown tag {name!r}{hint}")
        self.name = name
        self.close = tuple(close)


class AmbiguousTagError(LookupError):
    """The name exists in several dimensions; the caller must say which (dimension:tag)."""

    def __init__(self, name: str, dimensions: Sequence[str]) -> None:
        super().__init__(
            f"tag {name!r} exists in dimensions {', '.join(dimensions)}; write it as dimension:tag"
        )
        self.name = name
        self.dimensions = tuple(dimensions)


@dataclass(frozen=True, slots=True)
class HeldTag:
    """An active tag of the customer, as the policy needs to see it."""

    dimension: str
    tag: str

    @property
    def key(self) -> tuple[str, str]:
        return self.dimension, name_key(self.tag)


@dataclass(frozen=True, slots=True)
class Holding:
    """A customer's active tags as applying one tag sees them: how many in all, and those that decide it.

    `relevant` holds at least every active tag of the applied tag's dimension with its name key and, when that
    dimension is exclusive, every active tag of the dimension; any other tag in it is ignored. So a store can
    answer with a count and a few rows instead of every tag the customer holds.
    """

    count: int  # distinct active tags in every dimension, sensitive ones included
    relevant: tuple[HeldTag, ...]

    @classmethod
    def of(cls, held: Sequence[HeldTag]) -> Holding:
        """The holding of a customer whose every active tag is `held`."""
        return cls(len({h.key for h in held}), tuple(held))


@dataclass(frozen=True, slots=True)
class ApplyDecision:
    """What applying one tag does: renew an active one or add it, replacing exclusive siblings."""

    renew: bool
    replaces: tuple[HeldTag, ...]
    expires_at: datetime | None
    warnings: tuple[str, ...] = ()


def is_temporary(tag: TagDef) -> bool:
    """A "today" tag lapses at the next local midnight instead of after 24 hours."""
    return tag.ttl_days == TEMPORARY_TTL_DAYS


def next_local_midnight(now: datetime, tz: tzinfo) -> datetime:
    """The first midnight after `now` on the wall clock of `tz` (DST-safe: built from the local date)."""
    local = now.astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz)


def expiry_for(tag: TagDef, now: datetime, tz: tzinfo) -> datetime | None:
    """When a new assignment of `tag` made at `now` lapses; None when the tag never expires."""
    if tag.ttl_days is None:
        return None
    if is_temporary(tag):
        return next_local_midnight(now, tz)
    return now + timedelta(days=tag.ttl_days)


def decide_apply(
    dimension: Dimension,
    tag: TagDef,
    held: Holding,
    now: datetime,
    tz: tzinfo,
    hard_cap: int = DEFAULT_HARD_CAP,
) -> ApplyDecision:
    """Decide how `tag` lands on a customer with `held`; raises CapRefusal at the hard cap.

    `held` counts every active tag, sensitive ones included: the caps protect the data, not a view of it.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    wanted = (dimension.key, name_key(tag.name))
    expires_at = expiry_for(tag, now, tz)
    if any(h.key == wanted for h in held.relevant):
        return ApplyDecision(renew=True, replaces=(), expires_at=expires_at)
    replaces = tuple(h for h in held.relevant if h.dimension == dimension.key) if dimension.exclusive else ()
    count_after = held.count - len(replaces) + 1
    if count_after > hard_cap:
        raise CapRefusal(tag.name, count_after - 1, hard_cap)
    warning = soft_cap_warning(count_after)
    warnings: tuple[str, ...] = (warning,) if warning else ()
    return ApplyDecision(renew=False, replaces=replaces, expires_at=expires_at, warnings=warnings)


class ScopeRefusal(PolicyRefusal):
    """A regional tag refused for a customer of another region; `zh` is the Chinese wording."""

    def __init__(self, reason: str, zh: str) -> None:
        super().__init__(reason)
        self.zh = zh


def refuse_out_of_scope(dimension: Dimension, tag: TagDef, region: str) -> None:
    """Refuse a regional tag for a customer of another region (or of none)."""
    if not in_scope(dimension, tag, region):
        scope = tag_scope(dimension, tag)
        where = f"属于{region}" if region else "没有填写区域"
        zh = f"标签「{tag.name}」只用于{'、'.join(scope)}的客户，这位客户{where}"
        raise ScopeRefusal(scope_refusal(tag, scope, region), zh)


def is_visible(dimension: Dimension | None, sees_sensitive: bool) -> bool:
    """Managers-only dimensions (and tags of dimensions no longer in the taxonomy) are hidden from agents."""
    if sees_sensitive:
        return True
    return dimension is not None and dimension.visibility is Visibility.ALL


def visible_dimension_keys(taxonomy: Taxonomy, sees_sensitive: bool) -> tuple[str, ...]:
    """Keys of the dimensions a viewer may see."""
    return tuple(d.key for d in taxonomy.dimensions if is_visible(d, sees_sensitive))


def refuse_pii(text: str, what: str = "note") -> None:
    """Refuse free text that carries personal data (ID number, mobile number, bank card)."""
    if contains_pii(text):
        raise PolicyRefusal(
            f"the {what} contains personal data (ID number, mobile number or bank card number); "
            "remove it — tags and notes must not hold personal data"
        )


def find_tag(
    taxonomy: Taxonomy, name: str, dimension: str | None = None, sees_sensitive: bool = True
) -> tuple[Dimension, TagDef]:
    """Resolve a tag by normalised name (or `dimension:name`); raises UnknownTagError/AmbiguousTagError."""
    if dimension is None and ":" in name:
        maybe_dim, _, rest = name.partition(":")
        if taxonomy.dimension(maybe_dim.strip()) is not None:
            dimension, name = maybe_dim.strip(), rest
    key = name_key(name)
    hits = [
        (d, t)
        for d in taxonomy.dimensions
        if (dimension is None or d.key == dimension) and is_visible(d, sees_sensitive)
        for t in d.tags_keyed(key)
    ]
    if not hits:
        raise UnknownTagError(name.strip(), close_matches(taxonomy, name, sees_sensitive))
    if len(hits) > 1:
        raise AmbiguousTagError(name.strip(), [d.key for d, _ in hits])
    return hits[0]


def close_matches(taxonomy: Taxonomy, name: str, sees_sensitive: bool = True, limit: int = 3) -> list[str]:
    """Visible tag names closest to `name`: containment first, then similarity."""
    key = name_key(name)
    names = _visible_names(taxonomy, sees_sensitive)
    by_key = {name_key(n): n for n in names}
    contained = [n for k, n in by_key.items() if key and (key in k or k in key)]
    similar = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=limit, cutoff=0.4)]
    out: list[str] = []
    for n in [*contained, *similar]:
        if n not in out:
            out.append(n)
    return out[:limit]


def _visible_names(taxonomy: Taxonomy, sees_sensitive: bool) -> Iterable[str]:
    for d in taxonomy.dimensions:
        if is_visible(d, sees_sensitive):
            yield from (t.name for t in d.iter_tags())
