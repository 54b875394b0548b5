"""标签体系: the tree, editing one tag with problems shown in place, preview over stored messages, save as
a new version, history with diffs, rollback, retire and merge."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from console.changes import changes_in_words
from console.nav import NavItem
from console.web import PREFIX, Page, PageRoute, current_taxonomy, form_value, redirect
from core.errors import NotAllowedError, NotFoundError
from core.records import TaxonomyVersion
from core.taxonomy.diff import VersionDiff, diff_versions
from core.taxonomy.drafts import (
    GENERAL,
    DimensionForm,
    DraftResult,
    TagForm,
    dimension_form,
    edit_dimension,
    edit_tag,
    form_for,
    parse_document,
)
from core.taxonomy.lifecycle import LifecycleError, merge_tags, retire_tag
from core.taxonomy.preview import DEFAULT_MESSAGES, MAX_MESSAGES, preview_draft
from core.taxonomy.store import import_taxonomy, rollback_taxonomy
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

BASE = f"{PREFIX}/taxonomy"
HISTORY_SHOWN = 50
ARCHIVE_SHOWN = 100
NOTICES = {"saved", "rolled_back", "retired_done", "merged_done"}


def _notice(page: Page) -> str:
    done = page.request.query.get("done", "")
    version = page.request.query.get("v", "")
    return page.t(done, n=version) if done in NOTICES and version.isdigit() else ""


async def get_tree(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    async with page.services.store.unit_of_work(read_only=True) as uow:
        archive = await uow.tag_archive.entries(ARCHIVE_SHOWN)
    return page.render(
        "taxonomy.html",
        active="taxonomy",
        version=current,
        taxonomy=current.taxonomy,
        archive=archive,
        notice=_notice(page),
    )


def _tag_options(taxonomy: Taxonomy) -> list[tuple[str, list[str]]]:
    return [(d.name, [t.name for t in d.iter_tags()]) for d in taxonomy.dimensions]


def _edit_page(
    page: Page,
    version: TaxonomyVersion,
    form: TagForm,
    original: tuple[str, str] | None,
    problems: dict[str, tuple[str, ...]] | None = None,
    status: int = 200,
    messages: int = DEFAULT_MESSAGES,
) -> web.Response:
    problems = problems or {}
    siblings: list[str] = []
    if original is not None:
        dimension = version.taxonomy.dimension(original[0])
        siblings = [t.name for t in dimension.iter_tags() if t.name != original[1]] if dimension else []
    return page.render(
        "tag_edit.html",
        status,
        active="taxonomy",
        version=version,
        taxonomy=version.taxonomy,
        form=form,
        original=original,
        problems=problems,
        general=problems.get(GENERAL, ()),
        tag_options=_tag_options(version.taxonomy),
        siblings=siblings,
        messages=messages,
    )


async def get_tag(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    dimension, name = request.query.get("dimension", ""), request.query.get("name", "")
    form = form_for(current.taxonomy, dimension, name)
    if form is None:
        raise web.HTTPNotFound(text=f"tag {name!r} is not in dimension {dimension!r}")
    return _edit_page(page, current, form, (dimension, form.name))


async def get_new_tag(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    dimension = request.query.get("dimension", "") or current.taxonomy.dimensions[0].key
    return _edit_page(page, current, TagForm(dimension=dimension, parent=request.query.get("parent", "")), None)


def _messages(form: Any) -> int:
    raw = form_value(form, "messages", 10)
    return max(1, min(int(raw), MAX_MESSAGES)) if raw.isdigit() else DEFAULT_MESSAGES


async def post_preview(request: web.Request, page: Page) -> web.StreamResponse:
    """Check the edited tag; problems go back to the form in place, a valid draft is previewed."""
    posted = await request.post()
    current = await current_taxonomy(page)
    fields = {k: form_value(posted, k) for k in ("dimension", "parent", "name", "color", "description", "ttl_days")}
    fields |= {k: form_value(posted, k, 5000) for k in ("keywords", "exclude")}
    fields["auto_apply"] = form_value(posted, "auto_apply")
    form = TagForm.from_mapping(fields)
    original_dimension, original_name = form_value(posted, "original_dimension"), form_value(posted, "original_name")
    original = (original_dimension, original_name) if original_name else None
    messages = _messages(posted)
    result = edit_tag(current.taxonomy, original, form)
    if result.taxonomy is None:
        return _edit_page(page, current, form, original, dict(result.problems), 422, messages)
    return await _preview_page(page, current, result, messages)


async def _preview_page(page: Page, current: TaxonomyVersion, result: DraftResult, messages: int) -> web.Response:
    assert result.taxonomy is not None
    matcher = page.services.matcher()
    if matcher is None:
        raise web.HTTPServiceUnavailable(text="the matcher is not built yet")
    preview = await preview_draft(page.services.store.messages, matcher, result.taxonomy, messages)
    return page.render(
        "preview.html",
        active="taxonomy",
        version=current,
        diff=changes_in_words(diff_versions(current.taxonomy, result.taxonomy), page.t),
        preview=preview,
        draft=json.dumps(result.document, ensure_ascii=False),
        messages=messages,
    )


async def post_save(request: web.Request, page: Page) -> web.StreamResponse:
    """Store the previewed draft as a new version, unless another version was saved since the preview."""
    posted = await request.post()
    base = form_value(posted, "base_version", 20)
    result = parse_document(form_value(posted, "draft", 3 * 1024 * 1024))
    current = await current_taxonomy(page)
    if result.taxonomy is None:
        return page.render(
            "problems.html", 422, active="taxonomy", problems=[p for ps in result.problems.values() for p in ps]
        )
    if base != str(current.version):
        notice = page.t("conflict", n=current.version)
        return page.render("problems.html", 409, active="taxonomy", problems=[notice])
    assert page.user is not None
    try:
        async with page.services.store.unit_of_work() as uow:
            change = await import_taxonomy(uow, result.taxonomy, page.user.id, page.services.clock(), note="console")
    except NotAllowedError as exc:
        return page.render("problems.html", 403, active="taxonomy", problems=[str(exc)])
    await page.services.refresh(change.version.version)
    log.info("console: %s saved taxonomy version %d", page.user.id, change.version.version)
    return redirect(f"{BASE}/history?done=saved&v={change.version.version}")


async def get_history(request: web.Request, page: Page) -> web.StreamResponse:
    async with page.services.store.unit_of_work(read_only=True) as uow:
        versions = (await uow.taxonomies.history())[: HISTORY_SHOWN + 1]
        current = await uow.taxonomies.current()
    rows = []
    for i, version in enumerate(versions[:HISTORY_SHOWN]):
        previous = versions[i + 1] if i + 1 < len(versions) else None
        diff = diff_versions(previous.taxonomy, version.taxonomy) if previous else VersionDiff()
        rows.append((version, changes_in_words(diff, page.t)))
    return page.render(
        "history.html",
        active="taxonomy",
        rows=rows,
        current=current.version if current else None,
        notice=_notice(page),
    )


async def post_rollback(request: web.Request, page: Page) -> web.StreamResponse:
    posted = await request.post()
    raw = form_value(posted, "version", 20)
    if not raw.isdigit():
        return page.render("problems.html", 400, active="taxonomy", problems=[f"version {raw!r} is not a number"])
    assert page.user is not None
    try:
        async with page.services.store.unit_of_work() as uow:
            change = await rollback_taxonomy(uow, int(raw), page.user.id, page.services.clock())
    except NotFoundError as exc:
        return page.render("problems.html", 404, active="taxonomy", problems=[str(exc)])
    except NotAllowedError as exc:
        return page.render("problems.html", 403, active="taxonomy", problems=[str(exc)])
    await page.services.refresh(change.version.version)
    log.info("console: %s rolled the taxonomy back to version %s", page.user.id, raw)
    return redirect(f"{BASE}/history?done=rolled_back&v={change.version.version}")


def _back(posted: Any, default: str) -> str:
    target = form_value(posted, "next", 300)
    return target if target.startswith(PREFIX + "/") and "//" not in target else default


async def post_retire(request: web.Request, page: Page) -> web.StreamResponse:
    posted = await request.post()
    assert page.user is not None
    try:
        async with page.services.store.unit_of_work() as uow:
            result = await retire_tag(
                uow, form_value(posted, "dimension"), form_value(posted, "name"), page.user.id, page.services.clock()
            )
    except LifecycleError as exc:
        return page.render("problems.html", 400, active="taxonomy", problems=[str(exc)])
    except NotAllowedError as exc:
        return page.render("problems.html", 403, active="taxonomy", problems=[str(exc)])
    await page.services.refresh(result.version.version)
    back = _back(posted, BASE)
    sep = "&" if "?" in back else "?"
    return redirect(f"{back}{sep}done=retired_done&v={result.version.version}")


async def post_merge(request: web.Request, page: Page) -> web.StreamResponse:
    posted = await request.post()
    assert page.user is not None
    try:
        async with page.services.store.unit_of_work() as uow:
            result = await merge_tags(
                uow,
                form_value(posted, "dimension"),
                form_value(posted, "source"),
                form_value(posted, "target"),
                page.user.id,
                page.services.clock(),
            )
    except LifecycleError as exc:
        return page.render("problems.html", 400, active="taxonomy", problems=[str(exc)])
    except NotAllowedError as exc:
        return page.render("problems.html", 403, active="taxonomy", problems=[str(exc)])
    await page.services.refresh(result.version.version)
    back = _back(posted, BASE)
    sep = "&" if "?" in back else "?"
    return redirect(f"{back}{sep}done=merged_done&v={result.version.version}")


async def get_dimension(request: web.Request, page: Page) -> web.StreamResponse:
    current = await current_taxonomy(page)
    form = dimension_form(current.taxonomy, request.query.get("key", ""))
    if form is None:
        raise web.HTTPNotFound(text="no such dimension")
    return _dimension_page(page, current, form)


def _dimension_page(
    page: Page,
    version: TaxonomyVersion,
    form: DimensionForm,
    problems: dict[str, tuple[str, ...]] | None = None,
    status: int = 200,
    messages: int = DEFAULT_MESSAGES,
) -> web.Response:
    problems = problems or {}
    return page.render(
        "dimension_edit.html",
        status,
        active="taxonomy",
        version=version,
        form=form,
        problems=problems,
        messages=messages,
    )


async def post_dimension_preview(request: web.Request, page: Page) -> web.StreamResponse:
    """Check a dimension's new settings; problems go back to the form, a valid draft is previewed."""
    posted = await request.post()
    current = await current_taxonomy(page)
    form = DimensionForm(
        key=form_value(posted, "key"),
        name=form_value(posted, "name"),
        exclusive=bool(form_value(posted, "exclusive")),
        managers_only=bool(form_value(posted, "managers_only")),
    )
    messages = _messages(posted)
    result = edit_dimension(current.taxonomy, form)
    if result.taxonomy is None:
        return _dimension_page(page, current, form, dict(result.problems), 422, messages)
    return await _preview_page(page, current, result, messages)


ROUTES = (
    PageRoute("GET", "/taxonomy/dimension", get_dimension),
    PageRoute("POST", "/taxonomy/dimension/preview", post_dimension_preview),
    PageRoute("GET", "/taxonomy", get_tree),
    PageRoute("GET", "/taxonomy/tag", get_tag),
    PageRoute("GET", "/taxonomy/tag/new", get_new_tag),
    PageRoute("POST", "/taxonomy/preview", post_preview),
    PageRoute("POST", "/taxonomy/save", post_save),
    PageRoute("GET", "/taxonomy/history", get_history),
    PageRoute("POST", "/taxonomy/rollback", post_rollback),
    PageRoute("POST", "/taxonomy/retire", post_retire),
    PageRoute("POST", "/taxonomy/merge", post_merge),
)
NAV = (NavItem("taxonomy", "/taxonomy", "标签体系", "Taxonomy", 10),)
