"""The /admin/v1 routes: verify the bearer token, translate the request, call core services, render JSON.

Each handler is registered from `ROUTES` with its own body cap. Every refusal is a 4xx JSON body
`{"error": ..., "problems": [...]}`, and writes happen inside one unit of work that rolls back on any
refusal, so nothing is half-written. `setup_admin` is only called when KEBIAO_ADMIN_TOKEN is set; without
it no /admin route exists (404).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from admin import render
from admin.auth import check_bearer
from admin.bodies import (
    Fields,
    Upload,
    decode_utf8,
    json_object,
    path_id,
    path_text,
    query_flag,
    query_int,
    query_text,
    read_body,
    refused,
    upload,
)
from admin.errors import AdminError, dumps
from core.errors import NotAllowedError, NotFoundError
from core.importing.customers import import_customers
from core.importing.files import ImportFile, ImportFileError, ImportLimits, parse_customer_bytes
from core.inbound import LIMITS, MAX_INT32, InputError
from core.learning.discovery import keyword_candidates
from core.learning.ports import LearningStore
from core.ports import Store, UnitOfWork
from core.records import TaxonomyVersion
from core.reports.tag_health import ReportSource, report_to_data, tag_health_report
from core.rules.dryrun import forecast
from core.rules.events import guess_format, parse_events
from core.rules.ingest import ingest_events
from core.rules.service import RuleContext
from core.tags.assignments import TaggingRules, change_tags
from core.tags.customers import customer_history, resolve_customer
from core.tags.expression import ExpressionError
from core.tags.search import MAX_PAGE, search_customers
from core.tags.summary import customer_summary
from core.tags.users import UnknownRegionError, assign_role, user_id_problem
from core.taxonomy.store import import_taxonomy, rollback_taxonomy, taxonomy_history
from core.types import Role, User
from tagging.loader import MAX_BYTES as TAXONOMY_MAX_BYTES
from tagging.loader import TaxonomyError, load_taxonomy_text
from tagging.normaliser import name_key
from tagging.policy import AmbiguousTagError, UnknownTagError, find_tag

log = logging.getLogger(__name__)

PREFIX = "/admin/v1"
JSON_CAP = 64 * 1024
IMPORT_CAP = ImportLimits().max_bytes
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file
ADMIN_VIEWER = User("admin-api", Role.ADMIN)
DEFAULT_ACTOR = "admin-api"
MAX_EXPRESSION = 2000  # characters of a tag expression (?expr=)
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AdminServices:
    """What the admin handlers call; built by app.py once storage is open."""

    store: Store
    reports: ReportSource
    refresh: Callable[[int], Awaitable[bool]]  # the watcher's refresh; True once version N (or newer) is in force
    rules: TaggingRules
    clock: Callable[[], datetime] = field(default=_now)
    automation: RuleContext | None = None  # customer events and rules (events import, rules test)
    learning: LearningStore | None = None  # training examples and models (keyword discovery)


ADMIN_SERVICES = web.AppKey("admin_services", AdminServices)
Handler = Callable[[web.Request, AdminServices], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # below PREFIX
    handler: Handler
    max_body: int  # bytes announced by Content-Length beyond this are refused with 413 before reading


def setup_admin(app: web.Application, token: str, services: Callable[[web.Application], AdminServices]) -> None:
    """Register every admin route behind `token`; `services(app)` runs at start-up, after storage opened."""
    if not token:
        raise ValueError("the admin API needs a token (KEBIAO_ADMIN_TOKEN)")

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[ADMIN_SERVICES] = services(app)
        yield

    app.cleanup_ctx.append(ctx)
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, _guarded(route, token))
    # Last: any other path or method under the prefix is refused after the token check, so an unauthenticated
    # caller learns nothing (401), and an authenticated one gets a 404 naming what it asked for.
    app.router.add_route("*", PREFIX + "/{tail:.*}", _guarded(Route("*", "/{tail}", _no_route, 0), token))


async def _no_route(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """An admin path or method that does not exist (reached only with a valid token)."""
    raise AdminError(404, f"no admin route {request.method} {request.path[:200]}; see docs/admin-api.md")


def _guarded(route: Route, token: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            check_bearer(request, token)
            if request.content_length and request.content_length > route.max_body:
                raise AdminError(
                    413, f"request body is too large ({request.content_length:,} bytes; limit {route.max_body:,})"
                )
            services = request.app.get(ADMIN_SERVICES)
            if services is None:
                raise AdminError(503, "the admin API is starting; try again shortly")
            response = await route.handler(request, services)
        except AdminError as exc:
            response = exc.response()
        except InputError as exc:
            response = refused(exc).response()
        except NotFoundError as exc:
            response = AdminError(404, str(exc)).response()
        # Never log headers: the Authorization header holds the token.
        log.info("admin %s %s -> %d", request.method, request.path, response.status)
        return response

    handle.__name__ = route.handler.__name__
    return handle


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


async def _current(uow: UnitOfWork) -> TaxonomyVersion:
    current = await uow.taxonomies.current()
    if current is None:
        raise AdminError(503, "no taxonomy stored yet; PUT /admin/v1/taxonomy first")
    return current


def _actor(request: web.Request, default: str = DEFAULT_ACTOR) -> str:
    actor = query_text(request, "actor", LIMITS["actor"], default)
    if not actor:
        raise AdminError(400, f"query parameter actor must be 1 to {LIMITS['actor']} characters")
    return actor


def _unreadable(what: str, exc: Exception) -> AdminError:
    """A parser failure on the uploaded text is the upload's fault: 400 with the parser's reason, clipped."""
    reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    log.warning("%s could not be parsed: %s", what, reason)
    return AdminError(400, f"{what} could not be parsed; nothing stored", [{"reason": reason}])


# ---------------------------------------------------------------- taxonomy


async def get_taxonomy(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """The current taxonomy in the design 3.4 file form, with its stored version number."""
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await _current(uow)
    return _json(render.version(current))


async def put_taxonomy(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Validate a YAML/JSON taxonomy, store it as a new version, rebuild the matcher at once."""
    ctype = request.content_type
    if ctype == "application/json":
        fmt = "json"
    elif ctype in YAML_TYPES:
        fmt = "yaml"
    else:
        raise AdminError(415, f"send the taxonomy as application/json or application/yaml (got {ctype or 'none'})")
    actor = _actor(request)
    text = decode_utf8(await read_body(request, TAXONOMY_MAX_BYTES), "the taxonomy")
    try:
        # Parsing a large file is CPU work: a worker thread keeps the event loop answering meanwhile.
        taxonomy = await asyncio.to_thread(load_taxonomy_text, text, source="request body", fmt=fmt)
    except TaxonomyError as exc:
        raise _taxonomy_refused(exc) from exc
    except Exception as exc:  # the loader is pure: any other failure is still this document's fault
        raise _unreadable("the taxonomy", exc) from None
    try:
        async with services.store.unit_of_work() as uow:
            change = await import_taxonomy(uow, taxonomy, actor, services.clock(), note="admin API")
    except TaxonomyError as exc:  # a field its column cannot hold, found before anything was written
        raise _taxonomy_refused(exc) from exc
    except NotAllowedError as exc:  # a regional manager's change outside their regions
        raise AdminError(403, str(exc)) from None
    in_force = await services.refresh(change.version.version)
    # 200 with "changed": false when the body matched the version in force (no version stored).
    return _json(render.taxonomy_change(change, in_force), status=201 if change.changed else 200)


def _taxonomy_refused(exc: TaxonomyError) -> AdminError:
    problems = [render.taxonomy_problem(p) for p in exc.problems]
    return AdminError(400, f"taxonomy refused ({len(problems)} problems); nothing stored", problems)


async def get_taxonomy_history(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Every stored version, newest first, without the documents."""
    async with services.store.unit_of_work(read_only=True) as uow:
        history = await taxonomy_history(uow)
        current = await uow.taxonomies.current()
    now_version = current.version if current else None
    return _json({"versions": [render.version_meta(v, now_version) for v in history]})


async def post_taxonomy_rollback(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Make version N current again (stored as a new version) and rebuild the matcher."""
    fields = Fields(await json_object(request, JSON_CAP), ("version", "actor"))
    version = fields.integer("version", minimum=1, maximum=MAX_INT32)
    actor = fields.text("actor", required=False) or DEFAULT_ACTOR
    fields.done()
    assert version is not None
    try:
        async with services.store.unit_of_work() as uow:
            change = await rollback_taxonomy(uow, version, actor, services.clock())
    except NotAllowedError as exc:  # a regional manager's rollback would change other regions' tags
        raise AdminError(403, str(exc)) from None
    in_force = await services.refresh(change.version.version)
    return _json(render.taxonomy_change(change, in_force), status=201 if change.changed else 200)


# ---------------------------------------------------------------- customers


async def post_customers_import(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Import a CSV/XLSX upload all-or-nothing; ?dry_run=1 checks and counts, writing nothing."""
    dry_run = query_flag(request, "dry_run")
    actor = _actor(request, "import")
    file = await upload(request, IMPORT_CAP)
    try:
        # Parsing is CPU work: it runs in a worker thread so the event loop keeps answering. Row problems
        # come back with the rows so the import adds its own and one response lists them all.
        parsed = await asyncio.to_thread(_parse_upload, file)
        async with services.store.unit_of_work(read_only=True) as uow:
            current = await _current(uow)
        summary = await import_customers(
            services.store,
            current.taxonomy,
            services.rules,
            parsed.rows,
            actor=actor,
            now=services.clock(),
            dry_run=dry_run,
            problems=parsed.problems,
            refused_tags=parsed.refused_tags,
        )
    except ImportFileError as exc:
        problems = [render.row_problem(p) for p in exc.problems]
        raise AdminError(400, f"import file refused ({len(problems)} problems); nothing imported", problems) from exc
    return _json(render.import_summary(summary, parsed.format, len(parsed.rows)))


def _parse_upload(file: Upload) -> ImportFile:
    """The upload's rows and row problems; a parser failure other than ImportFileError is still a 400."""
    try:
        return parse_customer_bytes(file.data, file.filename, collect=True)
    except ImportFileError:
        raise
    except Exception as exc:  # the parsers are pure: whatever they raise on this file is the file's fault
        raise _unreadable("the import file", exc) from None


async def get_customer(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """A customer's tags grouped by dimension (admin view: sensitive dimensions included)."""
    customer_id = path_id(request)
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await _current(uow)
        summary = await customer_summary(uow, current.taxonomy, customer_id, ADMIN_VIEWER, services.clock())
    return _json(render.summary(summary))


async def get_customer_history(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """A customer's tag events, newest first (?limit=&before=: keyset paging by event id; ?skip= also works)."""
    customer_id = path_id(request)
    skip = query_int(request, "skip", 0, 0, 1_000_000)
    limit = query_int(request, "limit", 50, 1, 200)
    before = query_int(request, "before", 0, 0, 2**63 - 1)
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await _current(uow)
        events = await customer_history(uow, current.taxonomy, customer_id, ADMIN_VIEWER, skip, limit, before)
    return _json(
        {
            "customer_id": customer_id,
            "skip": skip,
            "limit": limit,
            "before": before,
            "next_before": events[-1].id if len(events) == limit else None,
            "events": [render.event(e) for e in events],
        }
    )


async def get_customers(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Resolve ?q= (name, CRM id or WeCom external id): one customer, or candidates to choose from."""
    q = query_text(request, "q", LIMITS["customer_name"])
    if not q:
        raise AdminError(400, "query parameter q is required: a customer name, CRM id or WeCom external user id")
    limit = query_int(request, "limit", 5, 1, 20)
    async with services.store.unit_of_work(read_only=True) as uow:
        resolution = await resolve_customer(uow, q, limit)
    return _json(
        {
            "customer": render.customer(resolution.customer) if resolution.customer else None,
            "candidates": [render.customer(c) for c in resolution.candidates],
        }
    )


async def get_search(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Customers matching a tag expression (?expr=VIP客户 AND 询价客户&count=&after=), by customer id.

    `after` (keyset paging: the `next_after` of the previous page) costs the same on every page; `skip` still
    works but a deep skip reads every match before it."""
    expr = query_text(request, "expr", MAX_EXPRESSION)
    if not expr:
        raise AdminError(400, "query parameter expr is required, e.g. expr=VIP客户 AND NOT 沉默客户")
    skip = query_int(request, "skip", 0, 0, 1_000_000)
    count = query_int(request, "count", 25, 1, MAX_PAGE)
    after = query_int(request, "after", 0, 0, 2**63 - 1)
    try:
        async with services.store.unit_of_work(read_only=True) as uow:
            current = await _current(uow)
            page = await search_customers(
                uow, current.taxonomy, expr, ADMIN_VIEWER, services.clock(), skip, count, after
            )
    except ExpressionError as exc:
        where = [{"position": exc.position + 1}] if exc.position is not None else []
        raise AdminError(400, f"bad expression: {exc.message}", where) from exc
    except UnknownTagError as exc:
        raise AdminError(400, str(exc), [{"tag": exc.name, "did_you_mean": list(exc.close)}]) from exc
    return _json(
        {
            "total": page.total,
            "total_is_lower_bound": page.total_is_lower_bound,
            "skip": page.skip,
            "count": page.count,
            "after": page.after,
            "next_after": page.next_after,
            "customers": [render.customer(c) for c in page.customers],
        }
    )


async def post_customer_tags(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Add and remove tags (source manual) all-or-nothing: any refused tag rolls every change back."""
    customer_id = path_id(request)
    fields = Fields(await json_object(request, JSON_CAP), ("add", "remove", "actor"))
    add = fields.strings("add")
    remove = fields.strings("remove")
    actor = fields.text("actor", required=True)
    if not fields.problems and not add and not remove:
        fields.fail("add", "nothing to do: give at least one tag in add or remove")
    both = {name_key(n) for n in add} & {name_key(n) for n in remove}
    for name in add:
        if name_key(name) in both:
            fields.fail("remove", f"tag {name!r} is in both add and remove; keep it in one")
    fields.done()
    assert actor is not None
    now = services.clock()
    evidence = {"via": "admin-api"}
    problems: list[dict[str, Any]] = []
    async with services.store.unit_of_work() as uow:
        current = await _current(uow)
        taxonomy = current.taxonomy
        if await uow.customers.get(customer_id) is None:
            raise NotFoundError(f"customer {customer_id} does not exist")
        changes, refused = await change_tags(
            uow, taxonomy, services.rules, customer_id, add, remove, actor=actor, now=now, evidence=evidence
        )
        for r in refused:
            problem: dict[str, Any] = {"field": f"{r.op}[{r.index}]", "tag": r.name, "reason": str(r.error)}
            if isinstance(r.error, UnknownTagError):
                problem["did_you_mean"] = list(r.error.close)
            problems.append(problem)
        if problems:
            # raising inside the unit of work rolls back the changes already made in this request
            raise AdminError(400, f"{len(problems)} tag changes refused; nothing changed", problems)
    return _json({"customer_id": customer_id, "changes": [render.tag_change(c) for c in changes]})


# ---------------------------------------------------------------- users and reports


async def put_user(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Set a user's role and regions (`{"role": "manager", "regions": ["华东"]}`)."""
    user_id = path_text(request, "user_id", "user id", LIMITS["user_id"]).strip()
    problem = user_id_problem(user_id)
    if problem is not None:
        raise AdminError(400, problem)
    fields = Fields(await json_object(request, JSON_CAP), ("role", "regions", "display_name"))
    role_text = fields.text("role", required=True)
    role: Role | None = None
    if role_text is not None:
        try:
            role = Role(role_text)
        except ValueError:
            fields.fail("role", f"{role_text!r} is not a role; use one of {', '.join(r.value for r in Role)}")
    regions = fields.strings("regions")
    display_name = fields.text("display_name", required=False)
    fields.done()
    assert role is not None
    try:
        async with services.store.unit_of_work() as uow:
            change = await assign_role(uow, user_id, role, regions, services.clock(), display_name)
    except UnknownRegionError as exc:
        given = [r.strip() for r in regions]
        problems = [
            {"field": f"regions[{given.index(region)}]", "region": region, "reason": reason, "did_you_mean": close}
            for region, reason, close in exc.refused
        ]
        raise AdminError(400, f"{len(problems)} unknown regions; nothing changed", problems) from None
    return _json({**render.user(change.user), "warnings": list(change.warnings)})


async def get_tag_report(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Tag health: usage per tag, retire and merge candidates, customers near the tag cap."""
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await _current(uow)
    report = await tag_health_report(services.reports, current.taxonomy, services.clock(), services.rules.hard_cap)
    return _json(report_to_data(report))


# ---------------------------------------------------------------- events and rules

EVENTS_CAP = 10 * 1024 * 1024
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})


def _automation(services: AdminServices) -> RuleContext:
    if services.automation is None:
        raise AdminError(503, "rules are not configured in this process")
    return services.automation


async def post_events(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Customer events as a JSON array or NDJSON: good lines stored (idempotent by id), bad ones listed, event rules
    run. 200 with the report; 400 when no line could be stored and some were refused."""
    ctx = _automation(services)
    ctype = request.content_type
    if ctype != "application/json" and ctype not in NDJSON_TYPES:
        raise AdminError(
            415, f"send events as application/json (an array) or application/x-ndjson (got {ctype or 'none'})"
        )
    text = decode_utf8(await read_body(request, EVENTS_CAP), "the events")
    fmt = guess_format(text) if ctype == "application/json" else "jsonl"
    parsed = parse_events(text, "json" if fmt == "json" else "jsonl", ctx.tz)
    report = await ingest_events(ctx, parsed, services.clock(), source="api")
    data = report.to_json()
    if report.errors and not report.stored and not report.repeated:
        problems = [f"line {e['line']}: {e['reason']}" for e in data["errors"]]
        raise AdminError(400, f"no event stored ({len(problems)} refused)", problems)
    return _json(data)


async def post_rules_test(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Dry-run a draft taxonomy's rules (the body, YAML or JSON) against stored data; writes nothing."""
    ctx = _automation(services)
    ctype = request.content_type
    if ctype not in ("application/json", *YAML_TYPES):
        raise AdminError(415, f"send the taxonomy as application/json or application/yaml (got {ctype or 'none'})")
    since = query_int(request, "since", 30, 1, 3650)
    raw_now = request.query.get("now")
    try:
        now = datetime.fromisoformat(raw_now) if raw_now else services.clock()
    except ValueError as exc:
        raise AdminError(400, f"now={raw_now!r} is not an ISO date-time") from exc
    now = now.replace(tzinfo=ctx.tz) if now.tzinfo is None else now
    text = decode_utf8(await read_body(request, TAXONOMY_MAX_BYTES), "the taxonomy")
    try:
        draft = load_taxonomy_text(text, source="request body", fmt="json" if ctype == "application/json" else "yaml")
    except TaxonomyError as exc:
        problems = [render.taxonomy_problem(p) for p in exc.problems]
        raise AdminError(400, f"taxonomy refused ({len(problems)} problems); nothing tested", problems) from exc
    result = await forecast(replace(ctx, taxonomy=lambda: draft), draft, now, since)
    return _json(result.to_json())


async def get_keyword_candidates(request: web.Request, services: AdminServices) -> web.StreamResponse:
    """Keyword candidates per tag mined from accepted vs rejected and untagged messages (`?tag=&limit=`)."""
    if services.learning is None:
        raise AdminError(503, "learning is not available on this server")
    limit = query_int(request, "limit", 10, 1, 100)
    min_support = query_int(request, "min_support", 3, 1, 1000)
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await _current(uow)
    only = None
    wanted = request.query.get("tag", "").strip()
    if wanted:
        try:
            dimension, tag = find_tag(current.taxonomy, wanted)
        except (UnknownTagError, AmbiguousTagError) as exc:
            raise AdminError(400, f"query parameter tag: {exc.args[0]}") from None
        only = (dimension.key, tag.name)
    found = await keyword_candidates(services.learning, current.taxonomy, only, limit, min_support)
    return _json({"taxonomy_version": current.version, "tags": [g.to_json() for g in found]})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/taxonomy", get_taxonomy, 0),
    Route("PUT", "/taxonomy", put_taxonomy, TAXONOMY_MAX_BYTES),
    Route("GET", "/taxonomy/history", get_taxonomy_history, 0),
    Route("POST", "/taxonomy/rollback", post_taxonomy_rollback, JSON_CAP),
    Route("POST", "/customers/import", post_customers_import, IMPORT_CAP + MULTIPART_SLACK),
    Route("GET", "/customers", get_customers, 0),
    Route("GET", "/customers/{id}", get_customer, 0),
    Route("GET", "/customers/{id}/history", get_customer_history, 0),
    Route("POST", "/customers/{id}/tags", post_customer_tags, JSON_CAP),
    Route("GET", "/search", get_search, 0),
    Route("PUT", "/users/{user_id}", put_user, JSON_CAP),
    Route("GET", "/reports/tags", get_tag_report, 0),
    Route("POST", "/events", post_events, EVENTS_CAP),
    Route("POST", "/rules/test", post_rules_test, TAXONOMY_MAX_BYTES),
    Route("GET", "/learning/keywords", get_keyword_candidates, 0),
)
