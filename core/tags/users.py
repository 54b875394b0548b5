"""Users and their roles (agent, manager, admin) with the regions a manager looks after."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.ports import UnitOfWork
from core.types import Role, User


async def get_user(uow: UnitOfWork, user_id: str) -> User:
    """The stored user, or an agent with no regions when never seen (least privilege)."""
    return await uow.users.get(user_id) or User(id=user_id)


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


async def managers_for_region(uow: UnitOfWork, region: str) -> list[User]:
    """Managers who look after `region` (managers without regions look after all)."""
    managers = await uow.users.with_role(Role.MANAGER.value)
    return [m for m in managers if not m.regions or region in m.regions]
