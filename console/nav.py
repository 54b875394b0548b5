"""The console's page registry: each page module brings its routes and its navigation entry.

To add a page, write `console/pages/NAME.py` with `ROUTES` and `NAV`, then
append "console.pages.NAME" to PAGE_MODULES; the navigation, sign-in guard and CSRF check come with it.
Navigation labels are (Chinese, English) pairs; `order` places the entry.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_MODULES: tuple[str, ...] = (
    "console.pages.signin",
    "console.pages.teams",
    "console.pages.taxonomy",
    "console.pages.customers",
    "console.pages.reports",
    "console.pages.rules",
    "console.pages.keywords",
)


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    path: str  # under /console
    zh: str
    en: str
    order: int = 100

    def label(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh
