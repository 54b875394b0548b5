"""客户: search by name or tag expression with paging; a customer's tags by dimension, timeline and chats;
adding and removing tags under the same policy as chat (all-or-nothing per submission)."""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from console.nav import NavItem
from console.web import PREFIX, Page, PageRoute, form_value, redirect
from core.errors import NotFoundError
from core.tags.assignments import change_tags
from core.tags.customers import customer_history
from core.tags.expression import ExpressionError
from core.tags.search import search_customers
from core.tags.summary import customer_summary
from tagging.normaliser import name_key
from tagging.policy import UnknownTagError

log = logging.getLogger(__name__)

PAGE_SIZE = 25
COUNT_CAP = 10_000  # the name search counts this many matches at most
TIMELINE = 100
MAX_QUERY = 300
_SPLIT = re.compile(r"[,，、;；\s]+")


async def get_search(request: web.Request, page: Page) -> web.StreamResponse:
    q = request.query.get("q", "").strip()[:MAX_QUERY]
    mode = "expr" if request.query.get("mode") == "expr" else "name"
    raw_page = request.query.get("page", "1")
    number = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) < 100_000 else 1
    skip = (number - 1) * PAGE_SIZE
    customers: list[Any] = []
    total = 0
    more = False  # the expression search stopped counting at its cap
    error = ""
    if q:
        if mode == "expr":
            try:
                async with page.services.store.unit_of_work(read_only=True) as uow:
                    current = await uow.taxonomies.current()
                    assert current is not None and page.user is not None
                    found = await search_customers(
                        uow, current.taxonomy, q, page.user, page.services.clock(), skip, PAGE_SIZE
                    )
                customers, total, more = list(found.customers), found.total, found.total_is_lower_bound
            except ExpressionError as exc:
                error = exc.message
            except UnknownTagError as exc:
                error = str(exc)
        else:
            customers, total = await page.services.store.queries.customers_by_name(name_key(q), skip, PAGE_SIZE)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    shown = f"{COUNT_CAP:,}+" if mode == "name" and total > COUNT_CAP else f"{total:,}" + ("+" if more else "")
    return page.render(
        "customers.html",
        400 if error else 200,
        active="customers",
        q=q,
        mode=mode,
        customers=customers,
        total=shown,
        number=number,
        pages=pages,
        error=error,
    )


def _customer_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**62:
        raise web.HTTPNotFound(text="no such customer")
    return int(raw)


async def _customer_page(page: Page, customer_id: int, problems: list[str], status: int = 200) -> web.Response:
    assert page.user is not None
    now = page.services.clock()
    try:
        async with page.services.store.unit_of_work(read_only=True) as uow:
            current = await uow.taxonomies.current()
            assert current is not None
            summary = await customer_summary(uow, current.taxonomy, customer_id, page.user, now)
            events = await customer_history(uow, current.taxonomy, customer_id, page.user, 0, TIMELINE)
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    conversations = await page.services.store.queries.conversations(customer_id)
    done = page.request.query.get("done") == "tags"
    return page.render(
        "customer.html",
        status,
        active="customers",
        summary=summary,
        customer=summary.customer,
        events=events,
        conversations=conversations,
        problems=problems,
        notice=page.t("tag_changes_done") if done and not problems else "",
        names=[t.name for t in current.taxonomy.iter_tags()],
    )


async def get_customer(request: web.Request, page: Page) -> web.StreamResponse:
    return await _customer_page(page, _customer_id(request), [])


async def post_tags(request: web.Request, page: Page) -> web.StreamResponse:
    """`add` (names separated by commas) and `remove` (one name): the chat policy applies; any refusal
    rolls the whole submission back and is shown on the page."""
    customer_id = _customer_id(request)
    posted = await request.post()
    add = [n for n in _SPLIT.split(form_value(posted, "add", 2000)) if n]
    remove = [n for n in _SPLIT.split(form_value(posted, "remove", 400)) if n]
    assert page.user is not None
    actor, now, problems = page.user.id, page.services.clock(), []
    evidence = {"via": "console"}
    if not add and not remove:
        problems.append(page.t("tag_names"))
    try:
        async with page.services.store.unit_of_work() as uow:
            current = await uow.taxonomies.current()
            assert current is not None
            changes, refused = await change_tags(
                uow,
                current.taxonomy,
                page.services.rules,
                customer_id,
                add,
                remove,
                actor=actor,
                now=now,
                evidence=evidence,
            )
            for r in refused:
                close = r.error.close if isinstance(r.error, UnknownTagError) else ()
                hint = f" ({'、'.join(close)}?)" if close else ""
                problems.append(f"{r.name}: {r.error}{hint}")
            if problems:
                raise _Refused()
    except _Refused:
        return await _customer_page(page, customer_id, problems, 400)
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    log.info("console: %s changed %d tags of customer %d", actor, len(changes), customer_id)
    return redirect(f"{PREFIX}/customers/{customer_id}?done=tags")


class _Refused(Exception):
    """Rolls the unit of work back when any tag of a submission is refused."""


ROUTES = (
    PageRoute("GET", "/customers", get_search),
    PageRoute("GET", "/customers/{id}", get_customer),
    PageRoute("POST", "/customers/{id}/tags", post_tags),
)
NAV = (NavItem("customers", "/customers", "客户", "Customers", 20),)
