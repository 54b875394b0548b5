"""Who may use the console: managers and admins; everyone else (agents, unknown users) is refused."""

from __future__ import annotations

from core.ports import UnitOfWork
from core.tags.users import get_user
from core.types import Role, User

CONSOLE_ROLES = frozenset({Role.MANAGER, Role.ADMIN})
# A colon never appears in a Teams object id (a GUID) nor in a WeCom userid, so no member can be the operator.
OPERATOR = User(id="kebiao:operator", role=Role.ADMIN, display_name="operator")


def may_enter(user: User) -> bool:
    """True for managers and admins."""
    return user.role in CONSOLE_ROLES


async def console_user(uow: UnitOfWork, user_id: str) -> User:
    """The stored user (an unknown id is an agent: least privilege); the operator token is the admin."""
    if user_id == OPERATOR.id:
        return OPERATOR
    return await get_user(uow, user_id)
