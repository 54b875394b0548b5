"""Meeting prep: which customer a Teams meeting is about, from its linked chat or the words of its title."""

from __future__ import annotations

import re

from core.ports import UnitOfWork
from core.types import Customer
from tagging.normaliser import name_key

MAX_TITLE = 300
MIN_PART = 2
_SEPARATORS = re.compile(r"[\s\-—–_|:：/／\\,，、;；·•()（）\[\]【】<>《》“”\"'「」『』]+")


def title_parts(title: str) -> list[str]:
    """The words of a meeting title a customer name could be: split at separators, longest first."""
    parts = [p for p in _SEPARATORS.split(title[:MAX_TITLE]) if len(name_key(p)) >= MIN_PART]
    return sorted(dict.fromkeys(parts), key=len, reverse=True)


async def customer_in_title(uow: UnitOfWork, title: str) -> Customer | None:
    """The one customer whose full name (or crm id) is a word of the title; None when none or several are."""
    found: dict[int, Customer] = {}
    for part in title_parts(title):
        for customer in await customers_named(uow, part):
            found[customer.id] = customer
    return next(iter(found.values())) if len(found) == 1 else None


async def customers_named(uow: UnitOfWork, text: str) -> list[Customer]:
    """Customers whose full name (after normalisation), crm id or WeCom id is exactly `text`."""
    key = name_key(text)
    if not key:
        return []
    exact = await uow.customers.find_exact(text.strip())
    named = [c for c in await uow.customers.find_by_name_key(key, 5) if name_key(c.name) == key]
    return list({c.id: c for c in (*exact, *named)}.values())
