"""关键词候选: per tag, the keyword candidates learning mines from decided and untagged messages (word, support,
precision on history, two masked examples), each added to its tag in one click as a new taxonomy version.

Mining reads every labelled example, so the candidates are kept per process for the taxonomy version in force:
older than CANDIDATES_TTL seconds they are still shown while a refresh runs in the background.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

from console.nav import NavItem
from console.version_cache import VersionCache
from console.web import PREFIX, Page, PageRoute, current_taxonomy, form_value, redirect
from core.learning.discovery import TagCandidates, keyword_candidates
from core.records import TaxonomyVersion
from core.taxonomy.keywords import add_keywords
from tagging.loader import TaxonomyError
from tagging.pii import mask
from tagging.policy import AmbiguousTagError, UnknownTagError

log = logging.getLogger(__name__)

BASE = f"{PREFIX}/keywords"
CANDIDATES_TTL = 60.0
PER_TAG = 10
MIN_SUPPORT = 3


@dataclass(frozen=True)
class Mined:
    groups: tuple[TagCandidates, ...]
    at: datetime


CACHE = web.AppKey("console_keyword_cache", VersionCache[Mined])


def setup(app: web.Application) -> None:
    VersionCache[Mined]("console-keywords").install(app, CACHE)


async def mined(page: Page, current: TaxonomyVersion) -> Mined:
    """Candidates for the version in force: cached ones, refreshed in the background once stale."""
    services = page.services
    if services.learning is None:
        raise web.HTTPServiceUnavailable(text="learning is not available on this server")
    learning = services.learning

    async def make() -> Mined:
        groups = await keyword_candidates(learning, current.taxonomy, None, PER_TAG, MIN_SUPPORT)
        return Mined(tuple(groups), services.clock())

    return await page.request.app[CACHE].get(current.version, make, CANDIDATES_TTL)


def _notice(page: Page) -> str:
    query = page.request.query
    done, version = query.get("done", ""), query.get("v", "")
    word, tag = query.get("word", "")[:100], query.get("tag", "")[:100]
    if done == "added" and version.isdigit():
        return page.t("keyword_added", word=word, tag=tag, n=version)
    if done == "already":
        return page.t("keyword_already", word=word, tag=tag)
    return ""


async def get_candidates(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    data = await mined(page, current)
    wanted = request.query.get("only", "")
    names = {d.key: d.name for d in current.taxonomy.dimensions}
    groups = [g for g in data.groups if not wanted or f"{g.dimension}:{g.tag}" == wanted]
    shown = [
        (g, names.get(g.dimension, g.dimension), [(c, [mask(e) for e in c.examples]) for c in g.candidates])
        for g in groups
        if g.candidates
    ]
    return page.render(
        "keywords.html",
        active="keywords",
        version=current,
        groups=shown,
        without=[g.tag for g in groups if not g.positives],
        options=[(f"{g.dimension}:{g.tag}", f"{names.get(g.dimension, g.dimension)} / {g.tag}") for g in data.groups],
        only=wanted,
        at=data.at,
        notice=_notice(page),
    )


async def post_add(request: web.Request, page: Page) -> web.StreamResponse:
    """Add one candidate to its tag's keywords as a new taxonomy version; the result is shown on the page."""
    posted = await request.post()
    dimension, tag, word = form_value(posted, "dimension"), form_value(posted, "tag"), form_value(posted, "word", 100)
    if not word:
        return page.render("problems.html", 400, active="keywords", problems=["no word given: choose a candidate"])
    assert page.user is not None
    try:
        async with page.services.store.unit_of_work() as uow:
            addition, change = await add_keywords(
                uow, tag, [word], page.user.id, page.services.clock(), dimension or None
            )
    except (UnknownTagError, AmbiguousTagError) as exc:
        return page.render("problems.html", 400, active="keywords", problems=[f"tag: {exc.args[0]}"])
    except TaxonomyError as exc:
        return page.render("problems.html", 400, active="keywords", problems=[p.reason for p in exc.problems])
    query = {"word": word, "tag": addition.tag, "only": form_value(posted, "only", 200)}
    if change is None:
        return redirect(f"{BASE}?{urlencode(query | {'done': 'already'})}")
    await page.services.refresh(change.version.version)
    log.info("console: %s added keyword %r to %s/%s", page.user.id, word, addition.dimension, addition.tag)
    return redirect(f"{BASE}?{urlencode(query | {'done': 'added', 'v': str(change.version.version)})}")


ROUTES = (
    PageRoute("GET", "/keywords", get_candidates),
    PageRoute("POST", "/keywords/add", post_add),
)
NAV = (NavItem("keywords", "/keywords", "关键词候选", "Keyword candidates", 25),)
