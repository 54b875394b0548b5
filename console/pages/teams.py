"""The Teams personal tab: a page Teams may frame, whose script signs in with the Teams SSO token."""

from __future__ import annotations

from aiohttp import web

from console.web import Page, PageRoute


async def get_teams(request: web.Request, page: Page) -> web.StreamResponse:
    return page.render("teams.html")


ROUTES = (PageRoute("GET", "/teams", get_teams, public=True, frame=True),)
