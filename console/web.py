"""The console's request plumbing: services, routes, the sign-in guard, CSRF, sessions and headers."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp_jinja2
import jinja2
from aiohttp import web

from console import sessions
from console.i18n import choose_language, translator
from console.nav import PAGE_MODULES, NavItem
from console.teams_sso import AadTokenValidator
from core.console.access import console_user, may_enter
from core.console.ports import ConsoleQueries, WeComSignIn
from core.learning.ports import LearningStore
from core.records import TaxonomyVersion
from core.reports.tag_health import ReportSource
from core.rules.service import RuleContext
from core.tags.assignments import TaggingRules
from core.taxonomy.lifecycle import LifecycleUnitOfWork
from core.taxonomy.preview import MessageSamples, SuggestionSource
from core.types import User

log = logging.getLogger(__name__)

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_BODY = 2 * 1024 * 1024 + 64 * 1024  # a taxonomy draft (loader limit 2 MB) plus the form around it

# Teams clients (web, desktop, mobile) and the Microsoft 365 / Outlook hosts that may show the tab.
TEAMS_FRAME_ANCESTORS = (
    "https://teams.microsoft.com",
    "https://*.teams.microsoft.com",
    "https://teams.cloud.microsoft",
    "https://*.cloud.microsoft",
    "https://*.skype.com",
    "https://*.office.com",
    "https://outlook.office.com",
    "https://*.office365.com",
    "https://*.microsoft365.com",
    "https://teams.live.com",
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)


class ConsoleStore(Protocol):
    @property
    def queries(self) -> ConsoleQueries: ...

    @property
    def messages(self) -> MessageSamples: ...

    def unit_of_work(self, read_only: bool = False) -> LifecycleUnitOfWork: ...


@dataclass(frozen=True)
class WeComLogin:
    """Where the browser goes for WeCom web sign-in, and the exchange of its code."""

    url: str
    corp_id: str
    agent_id: str
    sign_in: WeComSignIn


@dataclass
class ConsoleServices:
    store: ConsoleStore
    reports: ReportSource
    matcher: Callable[[], SuggestionSource | None]
    refresh: Callable[[int], Awaitable[bool]]
    rules: TaggingRules
    teams: AadTokenValidator
    secret: bytes
    secure_cookies: bool
    session_seconds: int = 8 * 3600
    admin_token: str = ""
    wecom: WeComLogin | None = None
    automation: RuleContext | None = None  # customers, events and messages for testing rules over history
    learning: LearningStore | None = None  # labelled examples for keyword candidates
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())


class ServicesCell:
    """The console's services, filled in once the database is open (the app is frozen by then)."""

    def __init__(self) -> None:
        self.services: ConsoleServices | None = None


SERVICES = web.AppKey("console_services", ServicesCell)
NAV_ITEMS = web.AppKey("console_nav", list)


@dataclass
class Page:
    """What a handler gets: the services, the session (replaceable by sign-in), the user, the language."""

    request: web.Request
    services: ConsoleServices
    session: sessions.Session
    user: User | None
    lang: str

    @property
    def t(self) -> Callable[..., str]:
        return translator(self.lang)

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        nav: list[NavItem] = self.request.app[NAV_ITEMS]
        base = {
            "t": self.t,
            "lang": self.lang,
            "user": self.user,
            "session": self.session,
            "csrf": self.session.csrf,
            "nav": [(item, item.label(self.lang)) for item in nav],
            "active": context.pop("active", ""),
            "static": static_url,
            "prefix": PREFIX,
        }
        return aiohttp_jinja2.render_template(template, self.request, base | context, status=status)


Handler = Callable[[web.Request, Page], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PageRoute:
    method: str
    path: str
    handler: Handler
    public: bool = False  # sign-in pages: no signed-in session needed (CSRF still checked on POST)
    frame: bool = False  # the Teams tab page: may be framed by Teams' origins


async def current_taxonomy(page: Page) -> TaxonomyVersion:
    """The taxonomy version in force; 503 before one is stored."""
    async with page.services.store.unit_of_work(read_only=True) as uow:
        current = await uow.taxonomies.current()
    if current is None:
        raise web.HTTPServiceUnavailable(text="no taxonomy stored yet")
    return current


def static_url(name: str) -> str:
    from console import ASSET_VERSION

    return f"{PREFIX}/static/{name}?v={ASSET_VERSION}"


def _now() -> int:
    return int(time.time())


def load_session(request: web.Request, services: ConsoleServices) -> sessions.Session:
    raw = request.cookies.get(sessions.COOKIE, "")
    found = sessions.decode(raw, services.secret, _now()) if raw else None
    return found or sessions.anonymous(_now(), services.session_seconds)


async def _csrf_given(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token", "")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf", "")
        return value if isinstance(value, str) else ""
    return ""


def _guarded(route: PageRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES].services
        if services is None:
            return web.Response(status=503, text="the console is starting; try again shortly")
        session = load_session(request, services)
        page = Page(request, services, session, None, choose_language(request.headers.get("Accept-Language")))
        if request.method == "POST" and not sessions.same_token(await _csrf_given(request), session):
            log.warning("console: %s %s refused: CSRF token missing or wrong", request.method, request.path)
            response: web.StreamResponse = page.render("message.html", 403, title="csrf_title", body="csrf_body")
            return _finish(response, page, session, route)
        if not route.public:
            if not session.signed_in:
                if request.method == "GET":
                    response = redirect(f"{PREFIX}/signin")
                else:
                    response = page.render("message.html", 401, title="signin", body="signin_title")
                return _finish(response, page, session, route)
            async with services.store.unit_of_work(read_only=True) as uow:
                user = await console_user(uow, session.user_id)
            if not may_enter(user):  # e.g. demoted since signing in: the session ends here
                page.session = sessions.anonymous(_now(), services.session_seconds)
                return _finish(refusal(page), page, session, route)
            page.user = user
        try:
            response = await route.handler(request, page)
        except web.HTTPException as exc:
            if exc.status >= 400:
                raise
            response = exc
        return _finish(response, page, session, route)

    handle.__name__ = route.handler.__name__
    return handle


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the result page."""
    return web.Response(status=303, headers={"Location": location})


def refusal(page: Page) -> web.Response:
    """The polite refusal: no data at all, only what to do."""
    return page.render("message.html", 403, title="refused_title", body="refused_body")


def _finish(response: web.StreamResponse, page: Page, before: sessions.Session, route: PageRoute) -> web.StreamResponse:
    services = page.services
    # A Teams session's pages (and the tab page itself) are shown inside Teams; all others refuse framing.
    in_teams = route.frame or page.session.via == "teams"
    if page.session is not before or sessions.COOKIE not in page.request.cookies:
        _set_cookie(response, page.session, services, partitioned=in_teams)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Console-Frame"] = "teams" if in_teams else "deny"
    return response


def _set_cookie(
    response: web.StreamResponse, session: sessions.Session, services: ConsoleServices, partitioned: bool
) -> None:
    value = sessions.encode(session, services.secret)
    # Inside the Teams tab the page is a cross-site frame: its cookie must be SameSite=None (with Secure and
    # Partitioned); everywhere else Lax. CSRF tokens guard every change either way.
    cross_site = partitioned and services.secure_cookies
    response.set_cookie(
        sessions.COOKIE,
        value,
        path=PREFIX,
        httponly=True,
        secure=services.secure_cookies,
        samesite="None" if cross_site else "Lax",
        max_age=max(0, session.expires - _now()),
    )
    if cross_site:
        cookie = response.cookies[sessions.COOKIE]
        header = cookie.OutputString() + "; Partitioned"
        del response.cookies[sessions.COOKIE]
        response.headers.add("Set-Cookie", header)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Headers on every console response, the static files included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    framed = response.headers.pop("X-Console-Frame", "deny") == "teams"
    ancestors = " ".join(TEAMS_FRAME_ANCESTORS) if framed else "'none'"
    response.headers["Content-Security-Policy"] = CSP.format(ancestors=ancestors)
    if not framed:
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    if isinstance(response, web.HTTPException) and response.status >= 400:
        raise response
    return response


def create_console(cell: ServicesCell, modules: tuple[str, ...] = PAGE_MODULES) -> web.Application:
    """The console sub-application (mounted at /console); `cell` receives the services at start-up."""
    app = web.Application(middlewares=[security_headers], client_max_size=MAX_BODY)
    app[SERVICES] = cell
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    nav: list[NavItem] = []
    for name in modules:
        module = importlib.import_module(name)
        for route in getattr(module, "ROUTES", ()):
            app.router.add_route(route.method, route.path, _guarded(route))
        nav.extend(getattr(module, "NAV", ()))
        setup = getattr(module, "setup", None)
        if setup is not None:  # a page's own per-application state (e.g. a cache)
            setup(app)
    app[NAV_ITEMS] = sorted(nav, key=lambda item: item.order)
    app.router.add_static("/static", STATIC, name="static", follow_symlinks=False)

    return app


def form_value(form: Mapping[str, Any], name: str, limit: int = 2000) -> str:
    """A text field of a posted form, trimmed and capped."""
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""
