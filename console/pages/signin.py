"""Sign-in: the operator's admin token, WeCom web sign-in (OAuth code), Teams SSO; sign-out; the refusal."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlencode

from aiohttp import web

from console.web import PREFIX, Page, PageRoute, form_value, redirect, refusal
from core.console.access import OPERATOR, console_user, may_enter
from core.console.ports import SignInError

log = logging.getLogger(__name__)

HOME = f"{PREFIX}/taxonomy"


def _sign_in(page: Page, user_id: str, via: str, name: str) -> None:
    now = int(page.services.clock().timestamp())
    page.session = page.session.signed_in_as(user_id, via, name, now + page.services.session_seconds)


async def get_root(request: web.Request, page: Page) -> web.StreamResponse:
    return redirect(HOME)


async def get_signin(request: web.Request, page: Page) -> web.StreamResponse:
    return _signin_page(page)


def _signin_page(page: Page, error: str = "", status: int = 200) -> web.Response:
    services = page.services
    return page.render(
        "signin.html",
        status,
        error=error,
        token_enabled=bool(services.admin_token),
        wecom_enabled=services.wecom is not None,
        teams_enabled=services.teams.configured,
    )


async def post_signin_token(request: web.Request, page: Page) -> web.StreamResponse:
    """The operator's KEBIAO_ADMIN_TOKEN, compared in constant time; never logged."""
    expected = page.services.admin_token
    given = form_value(await request.post(), "token", 500)
    if not expected or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        log.warning("console: admin-token sign-in refused")
        return _signin_page(page, page.t("signin_failed", reason=page.t("wrong_token")), 401)
    _sign_in(page, OPERATOR.id, "token", OPERATOR.display_name)
    log.info("console: operator signed in with the admin token")
    return redirect(HOME)


async def get_signin_wecom(request: web.Request, page: Page) -> web.StreamResponse:
    """Send the browser to WeCom's web sign-in; `state` binds the answer to this session."""
    wecom = page.services.wecom
    if wecom is None:
        raise web.HTTPNotFound()
    callback = str(request.url.with_path(f"{PREFIX}/signin/wecom/callback").with_query(None))
    query = {
        "login_type": "CorpApp",
        "appid": wecom.corp_id,
        "agentid": wecom.agent_id,
        "redirect_uri": callback,
        "state": _state(page),
    }
    return web.Response(status=302, headers={"Location": f"{wecom.url}?{urlencode(query)}"})


def _state(page: Page) -> str:
    return hmac.new(page.services.secret, b"wecom:" + page.session.csrf.encode(), "sha256").hexdigest()[:32]


async def get_signin_wecom_callback(request: web.Request, page: Page) -> web.StreamResponse:
    """WeCom sends the browser back with `code` and our `state`; the code becomes a userid via the WeCom API."""
    wecom = page.services.wecom
    if wecom is None:
        raise web.HTTPNotFound()
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if not hmac.compare_digest(state.encode(), _state(page).encode()):
        return _signin_page(page, page.t("signin_failed", reason="state"), 400)
    try:
        userid = await wecom.sign_in.userid_for_code(code)
    except SignInError as exc:
        log.warning("console: WeCom sign-in refused: %s", exc)
        return _signin_page(page, page.t("signin_failed", reason=str(exc)), 401)
    return await _enter(page, userid, "wecom")


async def post_signin_teams(request: web.Request, page: Page) -> web.StreamResponse:
    """The Teams tab posts its SSO token (JSON {"token": ...}); the answer says where to go next."""
    try:
        body = await request.json()
        token = body.get("token", "") if isinstance(body, dict) else ""
        identity = await page.services.teams.validate(token if isinstance(token, str) else "")
    except (ValueError, SignInError) as exc:
        log.warning("console: Teams sign-in refused: %s", exc)
        return web.json_response({"error": str(exc)}, status=401)
    response = await _enter(page, identity.object_id, "teams", identity.name)
    if response.status == 403:
        return web.json_response({"location": f"{PREFIX}/refused"}, status=403)
    return web.json_response({"location": HOME})


async def _enter(page: Page, user_id: str, via: str, name: str = "") -> web.Response:
    async with page.services.store.unit_of_work(read_only=True) as uow:
        user = await console_user(uow, user_id)
    if not may_enter(user):
        log.info("console: %s sign-in by a %s refused", via, user.role.value)
        return refusal(page)
    _sign_in(page, user.id, via, user.display_name or name)
    log.info("console: %s signed in (%s)", user.id, via)
    return redirect(HOME)


async def get_refused(request: web.Request, page: Page) -> web.StreamResponse:
    return refusal(page)


async def post_signout(request: web.Request, page: Page) -> web.StreamResponse:
    page.session = page.session.signed_in_as("", "", "", int(page.services.clock().timestamp()) + 600)
    return redirect(f"{PREFIX}/signin")


ROUTES = (
    PageRoute("GET", "/", get_root),
    PageRoute("GET", "/signin", get_signin, public=True),
    PageRoute("POST", "/signin/token", post_signin_token, public=True),
    PageRoute("GET", "/signin/wecom", get_signin_wecom, public=True),
    PageRoute("GET", "/signin/wecom/callback", get_signin_wecom_callback, public=True),
    PageRoute("POST", "/signin/teams", post_signin_teams, public=True, frame=True),
    PageRoute("GET", "/refused", get_refused, public=True),
    PageRoute("POST", "/signout", post_signout, public=True),
)
