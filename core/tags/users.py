"""Users and their roles (agent, manager, admin) with the regions a manager looks after."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.ports import UnitOfWork
from core.types import Role, User
from tagging.regions import check_regions


async def get_user(uow: UnitOfWork, user_id: str) -> User:
    """The stored user, or an agent with no regions when never seen (least privilege)."""
    return await uow.users.get(user_id) or User(id=user_id)


async def display_names(uow: UnitOfWork, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Display names of these users where stored (one query; empty ids and users without a name are left out)."""
    wanted = sorted({user_id for user_id in user_ids if user_id})
    users = await uow.users.get_many(wanted) if wanted else {}
    return {user_id: user.display_name for user_id, user in users.items() if user.display_name}


# An Entra (AAD) object id, as Teams sends it in `from.aadObjectId`.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A WeCom userid (账号): letters, digits and _ - . @, at most 64 characters.
_WECOM_USERID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def user_id_problem(user_id: str) -> str | None:
    """Why `user_id` is not an AAD object id (GUID) or a WeCom userid, or None when it has either shape."""
    value = user_id.strip()
    if _GUID.fullmatch(value) or _WECOM_USERID.fullmatch(value):
        return None
    if not value:
        return "user id is empty: give the Teams AAD object id or the WeCom userid"
    if value.startswith("<") and value.endswith(">"):
        return (
            f"{value!r} is a placeholder: replace it with the user's Teams AAD object id (a GUID such as "
            "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b, Entra admin centre → Users → Object ID) or WeCom userid (账号)"
        )
    return (
        f"{value!r} is neither a Teams AAD object id (a GUID such as 0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b) nor a "
        "WeCom userid (1-64 letters, digits, _ - . @)"
    )


async def set_role(
    uow: UnitOfWork,
    user_id: str,
    role: Role,
    regions: Sequence[str],
    now: datetime,
    display_name: str | None = None,
) -> User:
    """Create or update a user's role and regions (regions de-duplicated, order kept)."""
    user_id = user_id.strip()
    if not user_id:
        raise ValueError("user id is empty: give the Teams AAD object id or the WeCom userid")
    existing = await uow.users.get(user_id)
    cleaned = tuple(dict.fromkeys(r.strip() for r in regions if r.strip()))
    name = display_name if display_name is not None else (existing.display_name if existing else "")
    return await uow.users.save(User(id=user_id, role=role, regions=cleaned, display_name=name), now)


class UnknownRegionError(ValueError):
    """Regions the taxonomy's `regions:` list does not hold; `refused` is (region, reason, closest known)."""

    def __init__(self, refused: Sequence[tuple[str, str, str | None]]) -> None:
        super().__init__("; ".join(reason for _, reason, _ in refused) + "; nothing was changed")
        self.refused = tuple(refused)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """The user as stored, and warnings about regions no dimension or tag uses."""

    user: User
    warnings: tuple[str, ...] = ()


async def assign_role(
    uow: UnitOfWork,
    user_id: str,
    role: Role,
    regions: Sequence[str],
    now: datetime,
    display_name: str | None = None,
) -> RoleChange:
    """set_role with the regions checked against the taxonomy in force; raises UnknownRegionError, writes nothing."""
    current = await uow.taxonomies.current()
    wanted = [r.strip() for r in regions if r.strip()]
    warnings: tuple[str, ...] = ()
    if current is not None:
        checked = check_regions(current.taxonomy, wanted)
        if checked.refused:
            raise UnknownRegionError(checked.refused)
        wanted, warnings = list(checked.regions), checked.warnings
    user = await set_role(uow, user_id, role, wanted, now, display_name)
    return RoleChange(user, warnings)


async def managers_for_region(uow: UnitOfWork, region: str) -> list[User]:
    """Managers who look after `region` (managers without regions look after all)."""
    managers = await uow.users.with_role(Role.MANAGER.value)
    return [m for m in managers if not m.regions or region in m.regions]
