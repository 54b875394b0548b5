"""Personal tags: an agent's own notes on a customer ("周三拜访", "性格急躁"), seen only by their author.

They live apart from the enterprise taxonomy: never counted in reports, never pushed to WeCom as corp tags,
never written to a CRM. Each author holds at most PERSONAL_CAP of them per customer, and a name carrying
personal data (ID number, mobile number, bank card) is refused like any other tag text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from tagging.normaliser import name_key
from tagging.pii import contains_pii

PERSONAL_CAP = 30
NAME_CHARS = 20


class PersonalSource(StrEnum):
    """Where a personal tag came from: typed in chat, or read from the author's own WeCom tags."""

    MANUAL = "manual"
    WECOM = "wecom"


@dataclass(frozen=True, slots=True)
class PersonalTag:
    customer_id: int
    author: str
    name: str
    source: PersonalSource
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PersonalChange:
    """What one change did, and the author's personal tags on the customer afterwards."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    not_held: tuple[str, ...]
    held: tuple[PersonalTag, ...]


class PersonalRefusal(ValueError):
    """Every problem of a requested change (English, Chinese), so the person can fix them all at once."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(p[0] for p in problems))
        self.problems = tuple(problems)


class PersonalTagStore(Protocol):
    """Each call is its own short transaction."""

    async def personal_for(self, customer_id: int, author: str) -> list[PersonalTag]:
        """The author's personal tags on the customer, oldest first."""
        ...

    async def change_personal(
        self,
        customer_id: int,
        author: str,
        add: Sequence[str],
        remove_keys: Sequence[str],
        source: PersonalSource,
        now: datetime,
    ) -> None:
        """Remove the tags whose name keys are listed, then add the names not yet held, in one transaction."""
        ...

    async def replace_personal_source(
        self, customer_id: int, author: str, names: Sequence[str], source: PersonalSource, now: datetime
    ) -> None:
        """Make the author's tags of `source` on the customer exactly `names` (tags of other sources stay)."""
        ...


def check_names(names: Sequence[str]) -> list[tuple[str, str]]:
    """Problems with personal tag names (English, Chinese): empty, too long, or carrying personal data."""
    problems: list[tuple[str, str]] = []
    for name in names:
        if not name_key(name):
            problems.append(("a personal tag name is empty", "个人标签名称不能为空"))
        elif len(name) > NAME_CHARS:
            problems.append(
                (
                    f"personal tag {name[:NAME_CHARS]}… is longer than {NAME_CHARS} characters; shorten it",
                    f"个人标签「{name[:NAME_CHARS]}…」超过 {NAME_CHARS} 个字，请缩短",
                )
            )
        elif contains_pii(name):
            problems.append(
                (
                    "a personal tag contains personal data (ID number, mobile number or bank card number); "
                    "remove it — tags must not hold personal data",
                    "个人标签里不能有身份证号、手机号或银行卡号，请删掉后重发",
                )
            )
    return problems


def plan_change(
    held: Sequence[PersonalTag], add: Sequence[str], remove: Sequence[str], cap: int = PERSONAL_CAP
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(names to add, names to remove, names asked to remove but not held); raises PersonalRefusal."""
    problems = check_names(add)
    held_keys = {name_key(t.name): t.name for t in held}
    removing = tuple(held_keys[name_key(n)] for n in remove if name_key(n) in held_keys)
    not_held = tuple(n for n in remove if name_key(n) not in held_keys)
    left = set(held_keys) - {name_key(n) for n in removing}
    adding = tuple(dict.fromkeys(n.strip() for n in add if name_key(n) and name_key(n) not in left))
    if len(left) + len(adding) > cap:
        problems.append(
            (
                f"you may keep at most {cap} personal tags on one customer; remove some first (mytag <customer> -tag)",
                f"每位客户最多 {cap} 个个人标签；请先移除一些（我的标签 <客户> -标签）",
            )
        )
    if problems:
        raise PersonalRefusal(problems)
    return adding, removing, not_held


async def change_personal(
    store: PersonalTagStore, customer_id: int, author: str, add: Sequence[str], remove: Sequence[str], now: datetime
) -> PersonalChange:
    """Check, then apply an author's change to their personal tags on a customer; raises PersonalRefusal."""
    held = await store.personal_for(customer_id, author)
    adding, removing, not_held = plan_change(held, add, remove)
    if adding or removing:
        keys = [name_key(n) for n in removing]
        await store.change_personal(customer_id, author, adding, keys, PersonalSource.MANUAL, now)
        held = await store.personal_for(customer_id, author)
    return PersonalChange(adding, removing, not_held, tuple(held))


def wecom_personal_tags(follow_users: object) -> dict[str, tuple[str, ...]]:
    """{agent userid: personal tag names} from externalcontact/get's `follow_user` (tag `type` 2 only).

    WeCom marks each tag an agent put on a contact with `type`: 1 corp tag, 2 the agent's own, 3 a rule
    group's. Malformed entries are skipped; names that are empty, too long or carry personal data are dropped.
    """
    out: dict[str, tuple[str, ...]] = {}
    if not isinstance(follow_users, list):
        return out
    for follow in follow_users:
        if not isinstance(follow, dict) or not isinstance(follow.get("userid"), str) or not follow["userid"]:
            continue
        raw = follow.get("tags")
        tags: list[object] = raw if isinstance(raw, list) else []
        names = [
            str(t.get("tag_name") or "").strip()
            for t in tags
            if isinstance(t, dict) and str(t.get("type")) == "2" and isinstance(t.get("tag_name"), str)
        ]
        kept = [n for n in dict.fromkeys(names) if not check_names([n])]
        out[follow["userid"]] = tuple(kept[:PERSONAL_CAP])
    return out
