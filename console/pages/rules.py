"""规则: the rules of the taxonomy in force in words, editing one rule with problems shown in place, the test of a
rule over history (stored customers, events and messages; nothing written) and saving as a new version."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from aiohttp import web

from console.nav import NavItem
from console.rule_text import action_text, condition_text, trigger_text
from console.web import PREFIX, Page, PageRoute, current_taxonomy, form_value, redirect
from core.records import TaxonomyVersion
from core.rules.dryrun import forecast
from core.rules.service import RuleContext
from core.taxonomy.drafts import GENERAL, DraftResult, parse_document
from core.taxonomy.rule_drafts import TRIGGER_KINDS, RuleForm, edit_rule, new_rule_form, remove_rule, rule_form, trial
from core.taxonomy.store import import_taxonomy
from tagging.normaliser import name_key
from tagging.rules import Rule

log = logging.getLogger(__name__)

BASE = f"{PREFIX}/rules"
DEFAULT_SINCE = 30
MAX_SINCE = 3650
TEXT_FIELDS = ("name", "description", "trigger", "trigger_on", "priority")


def _automation(page: Page) -> RuleContext:
    if page.services.automation is None:
        raise web.HTTPServiceUnavailable(text="rules are not configured in this process")
    return page.services.automation


def _describe(rule: Rule, page: Page) -> dict[str, Any]:
    """A rule with its trigger, condition and actions in words."""
    t = page.t
    return {
        "rule": rule,
        "trigger": trigger_text(rule, t),
        "condition": condition_text(rule.condition, t),
        "actions": [action_text(a, t) for a in rule.actions],
    }


async def get_rules(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    done, version = request.query.get("done", ""), request.query.get("v", "")
    notice = page.t("rule_saved", n=version) if done == "saved" and version.isdigit() else ""
    return page.render(
        "rules.html",
        active="rules",
        version=current,
        rules=[_describe(r, page) for r in current.taxonomy.rules.rules],
        notice=notice,
    )


def _edit_page(
    page: Page,
    version: TaxonomyVersion,
    form: RuleForm,
    original: str | None,
    problems: dict[str, tuple[str, ...]] | None = None,
    status: int = 200,
    since: int = DEFAULT_SINCE,
) -> web.Response:
    problems = problems or {}
    return page.render(
        "rule_edit.html",
        status,
        active="rules",
        version=version,
        form=form,
        original=original,
        problems=problems,
        triggers=TRIGGER_KINDS,
        since=since,
    )


async def get_rule(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    name = request.query.get("name", "")
    form = rule_form(current.taxonomy, name)
    if form is None:
        raise web.HTTPNotFound(text=f"rule {name!r} is not in the taxonomy")
    return _edit_page(page, current, form, form.name)


async def get_new_rule(request: web.Request, page: Page) -> web.StreamResponse:
    return _edit_page(page, await current_taxonomy(page), new_rule_form(), None)


def _since(form: Any) -> int:
    raw = form_value(form, "since", 10)
    return max(1, min(int(raw), MAX_SINCE)) if raw.isdigit() else DEFAULT_SINCE


async def post_test(request: web.Request, page: Page) -> web.StreamResponse:
    """Check the edited rule; problems go back to the form in place, a valid draft is tested over history."""
    posted = await request.post()
    current = await current_taxonomy(page)
    fields = {k: form_value(posted, k) for k in TEXT_FIELDS}
    fields |= {k: form_value(posted, k, 20_000) for k in ("when", "then")}
    fields["enabled"] = form_value(posted, "enabled")
    form = RuleForm.from_mapping(fields)
    original = form_value(posted, "original") or None
    since = _since(posted)
    result = edit_rule(current.taxonomy, original, form)
    if result.taxonomy is None:
        return _edit_page(page, current, form, original, dict(result.problems), 422, since)
    ctx = _automation(page)
    draft = trial(result.taxonomy, form.name)
    now = page.services.clock()
    outcome = await forecast(replace(ctx, taxonomy=lambda: draft), draft, now, since)
    log.info("console: %s tested rule %r over %d days of history", page.user.id if page.user else "?", form.name, since)
    return _test_page(page, current, result, form.name, since, outcome=outcome, enabled=form.enabled)


def _test_page(
    page: Page,
    current: TaxonomyVersion,
    result: DraftResult,
    name: str,
    since: int,
    outcome: Any = None,
    enabled: bool = True,
) -> web.Response:
    assert result.taxonomy is not None
    rule = next((r for r in result.taxonomy.rules.rules if name_key(r.name) == name_key(name)), None)
    return page.render(
        "rule_test.html",
        active="rules",
        version=current,
        name=name,
        described=_describe(rule, page) if rule is not None else None,
        outcome=outcome,
        forecast=outcome.rules[0] if outcome is not None and outcome.rules else None,
        since=since,
        enabled=enabled,
        draft=json.dumps(result.document, ensure_ascii=False),
    )


async def post_remove(request: web.Request, page: Page) -> web.StreamResponse:
    """The draft without the rule, shown for confirmation before it is saved."""
    posted = await request.post()
    current = await current_taxonomy(page)
    name = form_value(posted, "name")
    result = remove_rule(current.taxonomy, name)
    if result.taxonomy is None:
        return page.render("problems.html", 400, active="rules", problems=list(result.problems.get(GENERAL, ())))
    return _test_page(page, current, result, name, DEFAULT_SINCE)


async def post_save(request: web.Request, page: Page) -> web.StreamResponse:
    """Store the tested draft as a new version, unless another version was saved since the test."""
    posted = await request.post()
    base = form_value(posted, "base_version", 20)
    name = form_value(posted, "name", 200)
    result = parse_document(form_value(posted, "draft", 3 * 1024 * 1024))
    current = await current_taxonomy(page)
    if result.taxonomy is None:
        problems = [p for ps in result.problems.values() for p in ps]
        return page.render("problems.html", 422, active="rules", problems=problems)
    if base != str(current.version):
        return page.render("problems.html", 409, active="rules", problems=[page.t("conflict", n=current.version)])
    assert page.user is not None
    async with page.services.store.unit_of_work() as uow:
        change = await import_taxonomy(uow, result.taxonomy, page.user.id, page.services.clock(), note=f"rule {name}")
    await page.services.refresh(change.version.version)
    log.info("console: %s saved rule %r as taxonomy version %d", page.user.id, name, change.version.version)
    return redirect(f"{BASE}?done=saved&v={change.version.version}")


ROUTES = (
    PageRoute("GET", "/rules", get_rules),
    PageRoute("GET", "/rules/rule", get_rule),
    PageRoute("GET", "/rules/new", get_new_rule),
    PageRoute("POST", "/rules/test", post_test),
    PageRoute("POST", "/rules/remove", post_remove),
    PageRoute("POST", "/rules/save", post_save),
)
NAV = (NavItem("rules", "/rules", "规则", "Rules", 15),)
