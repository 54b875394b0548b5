"""Composition root: create_app(settings) wires every part; main() is the `kebiao` CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from admin.routes import AdminServices, setup_admin
from bots.teams.adapter import TeamsEndpoint, close_adapter, create_adapter
from bots.teams.auth import build_authentication
from bots.teams.bot import KebiaoBot
from bots.wecom.background import Background
from bots.wecom.client import WeComApiError, WeComClient
from bots.wecom.crypto import WeComCrypto
from bots.wecom.handlers import WeComHandlers, WeComServices
from bots.wecom.inbox import DRAIN_INTERVAL as INBOX_DRAIN_INTERVAL
from bots.wecom.inbox import CallbackInbox
from bots.wecom.routes import CALLBACK_PATH, WeComCallback
from bots.wecom.routes import CHANNEL as INBOX_CHANNEL
from bots.wecom.sync import DRAIN_INTERVAL, WeComTagSync
from cards.plain import render_customer_text
from config import ConfigError, Settings, check_bot_credentials
from core.tags.assignments import TaggingRules
from core.chat.service import ChatService
from core.importing.customers import import_customers
from core.tags.customers import customer_history, resolve_customer
from core.importing.files import ImportFileError, parse_customer_file
from core.taxonomy.matcher_holder import MatcherHolder
from core.records import TaxonomyVersion
from core.tags.summary import customer_summary
from core.taxonomy.store import ensure_taxonomy, import_taxonomy
from core.types import Role, User
from core.tags.users import get_user, set_role
from storage.channels import SqlChannelStore
from storage.database import Database, DatabaseError, open_database
from tagging.builtin import TEMPLATES, load_builtin
from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_file, merge_taxonomies
from tagging.taxonomy import Taxonomy

log = logging.getLogger("kebiao")

class TaxonomyCell:
    """The taxonomy version in force; swapped whole when an admin imports or rolls back."""

    def __init__(self) -> None:
        self.version: TaxonomyVersion | None = None

    @property
    def taxonomy(self) -> Taxonomy:
        if self.version is None:
            raise RuntimeError("taxonomy not loaded yet")
        return self.version.taxonomy


SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
MATCHERS = web.AppKey("matchers", MatcherHolder)
TAXONOMY = web.AppKey("taxonomy", TaxonomyCell)


# ---------------------------------------------------------------- HTTP application


def create_app(settings: Settings) -> web.Application:
    """Build the aiohttp application; every long-lived resource is one cleanup_ctx."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_teams_ctx)
    app.cleanup_ctx.append(_alerts_ctx)
    app.router.add_post("/api/messages", teams_messages)
    if settings.wecom.enabled:
        app.cleanup_ctx.append(_wecom_ctx)
        app.router.add_get(CALLBACK_PATH, wecom_verify)
        app.router.add_post(CALLBACK_PATH, wecom_receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if settings.admin_token:
        setup_admin(app, settings.admin_token, _admin_services)
    return app


def _admin_services(app: web.Application) -> AdminServices:
    """The admin API's services; a taxonomy change refreshes the matcher as the watcher would."""
    from storage.reports import SqlReportSource

    settings, database, holder, cell = app[SETTINGS], app[DATABASE], app[MATCHERS], app[TAXONOMY]

    async def refresh(version: int) -> bool:
        await _refresh_taxonomy(database, holder, cell)
        return cell.version is not None and cell.version.version >= version

    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
    return AdminServices(database, SqlReportSource(database.engine), refresh, rules)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable (a real query) and taxonomy loaded; 503 with the reason otherwise."""
    app = request.app
    if DATABASE not in app:
        return web.json_response({"status": "unavailable", "reason": "database not opened"}, status=503)
    try:
        await app[DATABASE].ping()
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", exc)
        return web.json_response({"status": "unavailable", "reason": "database unreachable"}, status=503)
    cell = app.get(TAXONOMY)
    if cell is None or cell.version is None or app[MATCHERS].current is None:
        return web.json_response({"status": "unavailable", "reason": "taxonomy not loaded"}, status=503)
    return web.json_response({"status": "ok", "taxonomy_version": cell.version.version})


def _initial_taxonomy(settings: Settings) -> Taxonomy:
    """KEBIAO_TAXONOMY when set, else the built-in taxonomy (used on first start only)."""
    return load_taxonomy_file(settings.taxonomy_path) if settings.taxonomy_path else load_builtin()


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open (and migrate) the database, load the taxonomy on first start, build the matcher."""
    settings = app[SETTINGS]
    database = await open_database(settings.database_url)
    try:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            initial = _initial_taxonomy(settings)
            async with database.unit_of_work() as uow:
                current = await ensure_taxonomy(uow, initial, "kebiao", datetime.now(UTC))
            log.info("first start: stored taxonomy version %d", current.version)
        holder = MatcherHolder()
        await holder.rebuild(current.taxonomy)
        cell = TaxonomyCell()
        cell.version = current
        app[DATABASE] = database
        app[MATCHERS] = holder
        app[TAXONOMY] = cell
        watcher = asyncio.create_task(_watch_taxonomy(database, holder, cell), name="taxonomy-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    finally:
        await database.close()


TAXONOMY_POLL_SECONDS = 5.0


async def _watch_taxonomy(database: Database, holder: MatcherHolder, cell: TaxonomyCell) -> None:
    """Pick up a taxonomy imported or rolled back elsewhere (CLI, another replica) without a restart."""
    while True:
        await asyncio.sleep(TAXONOMY_POLL_SECONDS)
        try:
            await _refresh_taxonomy(database, holder, cell)
        except Exception:
            # A failed poll (database briefly away) must not kill the watcher; the next one retries.
            log.exception("taxonomy refresh failed; keeping version %s", cell.version and cell.version.version)


async def _refresh_taxonomy(database: Database, holder: MatcherHolder, cell: TaxonomyCell) -> bool:
    """Rebuild the matcher off the request path and swap it in when the stored version changed."""
    async with database.unit_of_work() as uow:
        current = await uow.taxonomies.current()
    if current is None or (cell.version is not None and current.version == cell.version.version):
        return False
    if await holder.rebuild(current.taxonomy):
        cell.version = current
        log.info("taxonomy version %d now in force", current.version)
        return True
    return False


TEAMS = web.AppKey("teams", TeamsEndpoint)


class _TeamsClaims:
    """ActivityClaims on the durable inbound de-duplication table (shared by every replica)."""

    def __init__(self, channels: SqlChannelStore) -> None:
        self._channels = channels

    async def claim(self, key: str) -> bool:
        return await self._channels.claim_inbound("teams", key, datetime.now(UTC))

    async def release(self, key: str) -> None:
        await self._channels.release_inbound("teams", key)


async def _teams_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bot Framework auth + adapter + the Kebiao bot over the chat service, behind POST /api/messages."""
    settings = app[SETTINGS]
    channels = SqlChannelStore(app[DATABASE].engine)
    cell, holder = app[TAXONOMY], app[MATCHERS]
    from storage.outbox import SqlAlertStore

    chat = ChatService(
        app[DATABASE],
        channels,
        lambda: cell.taxonomy,
        lambda: holder.current,
        TaggingRules.of(settings.timezone, settings.tag_hard_cap),
        activity=SqlAlertStore(app[DATABASE].engine),
    )
    adapter = create_adapter(build_authentication(settings.teams))
    app[TEAMS] = TeamsEndpoint(adapter, KebiaoBot(chat, channels), claims=_TeamsClaims(channels))
    try:
        yield
    finally:
        await close_adapter(adapter)


async def teams_messages(request: web.Request) -> web.StreamResponse:
    """POST /api/messages, served by the endpoint built at start-up."""
    endpoint = request.app.get(TEAMS)
    if endpoint is None:
        return web.json_response({"error": "the Teams endpoint is not ready"}, status=503)
    return await endpoint.handle(request)


# ---------------------------------------------------------------- WeCom


WECOM = web.AppKey("wecom", WeComCallback)
# Seconds between WeCom tag-sync drain passes (tag-event log -> pending pushes -> mark_tag); tests shorten it.
WECOM_DRAIN_INTERVAL = web.AppKey("wecom_drain_interval", float)
# Seconds between passes over the WeCom callback inbox (failed or interrupted callbacks); tests shorten it.
WECOM_INBOX_INTERVAL = web.AppKey("wecom_inbox_interval", float)
# Seconds shutdown waits for running WeCom handlers before cancelling them (their inbox rows run next start).
WECOM_SHUTDOWN_GRACE = web.AppKey("wecom_shutdown_grace", float)


async def _wecom_ctx(app: web.Application) -> AsyncIterator[None]:
    """WeCom callback crypto, one HTTP session + API client, handlers and their background tasks."""
    settings = app[SETTINGS]
    wecom = settings.wecom
    database, cell, holder = app[DATABASE], app[TAXONOMY], app[MATCHERS]
    channels = SqlChannelStore(database.engine)
    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
    background = Background()
    session = aiohttp.ClientSession()
    client = None
    if wecom.secret:
        client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
    sync = None
    drainer: asyncio.Task[None] | None = None
    if client is not None:
        from storage.sync_pending import SqlPendingTagPushes

        # Every drain pass (every 30 s) first turns new tag events — whichever flow wrote them — into pending
        # pushes; failed pushes survive restarts.
        pending = SqlPendingTagPushes(database.engine)
        sync = WeComTagSync(client, database, channels, lambda: cell.taxonomy, background, pending)
        interval = app.get(WECOM_DRAIN_INTERVAL, DRAIN_INTERVAL)
        drainer = asyncio.create_task(sync.drain_forever(interval), name="wecom-sync-drain")

    async def on_taxonomy(version: TaxonomyVersion) -> None:
        await _refresh_taxonomy(database, holder, cell)

    chat = ChatService(database, channels, lambda: cell.taxonomy, lambda: holder.current, rules)
    from core.alerts.actions import Action, AlertStatus, act_on_alert
    from storage.outbox import SqlAlertStore

    alert_store = SqlAlertStore(database.engine)  # contact events record churn activity in the same transaction

    async def alert_action(alert_id: int, user_id: str, action: Action, now: datetime) -> AlertStatus:
        return await act_on_alert(alert_store, alert_id, user_id, action, now)

    services = WeComServices(
        alert_store, chat, lambda: cell.taxonomy, rules, client, sync, on_taxonomy, alert_action=alert_action
    )
    crypto = WeComCrypto(wecom.token, wecom.encoding_aes_key, wecom.corp_id)
    # Callbacks are stored before the 200 and processed from the inbox; the inbox pass (at start-up, then every
    # 30 s) retries failed ones and picks up those a previous process acknowledged but never finished.
    inbox = CallbackInbox(channels, INBOX_CHANNEL, WeComHandlers(services).dispatch, background)
    app[WECOM] = WeComCallback(crypto, inbox, background)
    inbox_drainer = asyncio.create_task(
        inbox.drain_forever(app.get(WECOM_INBOX_INTERVAL, INBOX_DRAIN_INTERVAL)), name="wecom-inbox-drain"
    )
    try:
        yield
    finally:
        for task in (drainer, inbox_drainer):
            if task is not None:
                task.cancel()  # a push or callback cut short keeps its row; the next start (or replica) retries it
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await background.close(app.get(WECOM_SHUTDOWN_GRACE, 5.0))
        await inbox.release_interrupted()
        await session.close()


async def wecom_verify(request: web.Request) -> web.StreamResponse:
    """GET /wecom/callback (URL verification)."""
    callback = request.app.get(WECOM)
    return await callback.verify(request) if callback else web.Response(status=503, text="not ready")


async def wecom_receive(request: web.Request) -> web.StreamResponse:
    """POST /wecom/callback (encrypted callbacks)."""
    callback = request.app.get(WECOM)
    return await callback.receive(request) if callback else web.Response(status=503, text="not ready")


# ---------------------------------------------------------------- alerts (issue 5)

ALERT_SCHEDULER = web.AppKey("alert_scheduler", object)  # the running AsyncIOScheduler; None when off


def _alert_deliverers(
    settings: Settings, database: Database, session: Any, teams_adapter: Any | None
) -> dict[str, Any]:
    """One Deliverer per configured channel: WeCom app messages, Teams through the stored references."""
    from bots.teams.alert_delivery import TeamsAlertDeliverer
    from bots.teams.notifier import TeamsNotifier
    from bots.wecom.alert_delivery import WeComAlertDeliverer
    from bots.wecom.client import WeComClient

    deliverers: dict[str, Any] = {}
    wecom = settings.wecom
    if wecom.corp_id and wecom.secret and wecom.agent_id:
        client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
        deliverers["wecom"] = WeComAlertDeliverer(client)
    if teams_adapter is not None:
        notifier = TeamsNotifier(teams_adapter, settings.teams.app_id)
        deliverers["msteams"] = TeamsAlertDeliverer(notifier, SqlChannelStore(database.engine))
    return deliverers


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The alert scheduler (KEBIAO_SCHEDULER=off: none), started after storage and Teams, stopped first."""
    import aiohttp

    from scheduler import configure_jobs, running_scheduler
    from storage.outbox import SqlAlertStore

    settings = app[SETTINGS]
    database = app[DATABASE]
    cell = app[TAXONOMY]
    endpoint = app.get(TEAMS)
    async with aiohttp.ClientSession() as session:
        deliverers = _alert_deliverers(settings, database, session, endpoint.adapter if endpoint else None)
        store, inbound = SqlAlertStore(database.engine), SqlChannelStore(database.engine)
        jobs = configure_jobs(settings, store, lambda: cell.taxonomy, deliverers, inbound)
        async with running_scheduler(jobs, settings) as scheduler:
            app[ALERT_SCHEDULER] = scheduler
            yield


def _parse_now(value: str) -> datetime:
    """--now: an ISO date-time; a value without an offset is read in KEBIAO_TIMEZONE by the caller."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date-time; use e.g. 2025-03-01T09:00:00+08:00"
        ) from None


def cmd_alerts_run_once(args: argparse.Namespace, settings: Settings) -> int:
    """Run every alert job once (expire, expiry digests, churn, outbox) at --now (default: the clock)."""
    from zoneinfo import ZoneInfo

    import aiohttp

    from core.alerts.jobs import run_once
    from scheduler import configure_jobs
    from storage.outbox import SqlAlertStore

    now: datetime = args.now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=ZoneInfo(settings.timezone))

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            async with database.unit_of_work() as uow:
                current = await ensure_taxonomy(uow, _initial_taxonomy(settings), "cli", datetime.now(UTC))
        taxonomy = current.taxonomy
        store = SqlAlertStore(database.engine)
        async with aiohttp.ClientSession() as session:
            # Teams needs the running bot's adapter; from the CLI, Teams rows wait for the server's drain.
            deliverers = _alert_deliverers(settings, database, session, None)
            jobs = configure_jobs(settings, store, lambda: taxonomy, deliverers, SqlChannelStore(database.engine))
            report = await run_once(jobs, now)
        async with store.unit_of_work() as uow:
            counts = await uow.outbox.counts()
        print(f"alerts at {now.isoformat()}: {report}")
        print("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
        for channel, waiting in sorted(report.outbox.elsewhere.items()):
            print(
                f"{waiting} {channel} alerts left pending: this command cannot deliver {channel}; "
                "a running `kebiao serve` (scheduler on) delivers them"
            )
        if counts.get("unknown"):
            print(
                f"{counts['unknown']} alerts have an unknown outcome (a sender stopped mid-send); "
                "check the recipients and the logs",
                file=sys.stderr,
            )
        return 0

    return _run_db(settings, work)


def _add_alerts_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kebiao alerts run-once [--now ISO]`."""
    group = verbs.add_parser("alerts", help="expiry and churn alerts", description="Expiry and churn alerts.")
    sub = group.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    once = sub.add_parser(
        "run-once",
        help="run the alert jobs once (expire tags, expiry digests, churn scoring, deliver the outbox)",
        description="Run every alert job once, as the scheduler would, at --now (default: now). Safe to run "
        "beside running servers: alerts are de-duplicated in the outbox. Teams alerts are delivered by the "
        "server; WeCom alerts are delivered here when WECOM_CORP_ID, WECOM_SECRET and WECOM_AGENT_ID are set.",
    )
    once.add_argument(
        "--now",
        type=_parse_now,
        metavar="ISO",
        help="the time to run at, e.g. 2025-03-01T09:00:00+08:00 (no offset: KEBIAO_TIMEZONE)",
    )
    once.set_defaults(handler=cmd_alerts_run_once)
    unknown = sub.add_parser(
        "unknown",
        help="list alerts whose delivery outcome is unknown; resend one or mark it sent",
        description="List outbox rows left `unknown` (a sender stopped mid-send, outside the platform's "
        "duplicate check). After checking with the recipient: --resend ID sends it again at the next drain, "
        "--mark-sent ID records it as delivered.",
    )
    choice = unknown.add_mutually_exclusive_group()
    choice.add_argument("--resend", type=_positive_int, metavar="ID", help="send this unknown alert again")
    choice.add_argument("--mark-sent", type=_positive_int, metavar="ID", help="record this unknown alert as sent")
    unknown.set_defaults(handler=cmd_alerts_unknown)


def cmd_alerts_unknown(args: argparse.Namespace, settings: Settings) -> int:
    """List `unknown` outbox rows, or resend / settle one of them."""
    from core.errors import NotFoundError
    from core.alerts.outbox import resend_unknown, settle_unknown
    from storage.outbox import SqlAlertStore

    async def work(database: Database) -> int:
        store = SqlAlertStore(database.engine)
        now, by = datetime.now(UTC), "kebiao alerts unknown (CLI)"
        target = args.resend or args.mark_sent
        if target is not None:
            act = resend_unknown if args.resend else settle_unknown
            try:
                message = await act(store, target, now, by)
            except (NotFoundError, ValueError) as exc:
                print(f"kebiao: {exc}", file=sys.stderr)
                return 1
            done = "queued for resending" if args.resend else "marked sent"
            print(f"alert {message.id} to {message.recipient} ({message.channel}) {done}")
            return 0
        async with store.unit_of_work() as uow:
            rows = await uow.outbox.unknown(1000)
        for m in rows:
            title = m.payload.get("title", "")
            print(f"{m.id}\t{m.channel}\t{m.recipient}\t{m.unsure_since.isoformat()}\t{title}\t{m.last_error or ''}")
        print(f"{len(rows)} alerts with an unknown outcome", file=sys.stderr)
        return 0

    return _run_db(settings, work)


# ---------------------------------------------------------------- CLI

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP app until interrupted; a busy port or an unusable database is one line and exit 1."""
    try:
        check_bot_credentials(settings.teams)
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    except DatabaseError as exc:
        print(f"kebiao serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Raised by bind(): the port is taken, the host is not an address of this machine, or no permission.
        reason = exc.strerror or str(exc)
        print(
            f"kebiao serve: cannot listen on {settings.host}:{settings.port}: {reason}; stop the other process "
            "or choose another PORT / HOST",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_taxonomy_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Check a taxonomy file (optionally merged over a built-in template); list every problem."""
    try:
        taxonomy = load_taxonomy_file(args.file)
        if args.template is not None:
            taxonomy = merge_taxonomies(load_builtin(args.template), taxonomy, source=args.file)
    except TaxonomyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    over = f" (merged over built-in + {args.template})" if args.template else ""
    tags = sum(1 for _ in taxonomy.iter_tags())
    print(
        f"{args.file}: valid{over}: {len(taxonomy.dimensions)} dimensions, {tags} tags, "
        f"{taxonomy.keyword_count} keywords"
    )
    return 0


def _add_taxonomy_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `kebiao taxonomy ACTION` group; its subparsers object is `sub`, where import/export belong too."""
    group = verbs.add_parser(
        "taxonomy",
        help="validate, import or export the tag taxonomy",
        description="Work with taxonomy files (YAML or JSON, design.md 3.4).",
    )
    sub = group.add_subparsers(dest="taxonomy_action", metavar="ACTION", required=True)
    validate = sub.add_parser(
        "validate",
        help="check a taxonomy file and list every problem",
        description="Check FILE (.yaml, .yml or .json). Prints a summary and exits 0 when valid; otherwise "
        "prints every problem as FILE:PATH: REASON on stderr and exits 1.",
    )
    validate.add_argument("file", metavar="FILE", help="taxonomy file to check")
    validate.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help=f"also check that FILE merges over the built-in taxonomy with this industry template "
        f"({', '.join(TEMPLATES)})",
    )
    validate.set_defaults(handler=cmd_taxonomy_validate)
    imp = sub.add_parser(
        "import",
        help="store a taxonomy file as the new current version",
        description="Validate FILE and store it in the database (KEBIAO_DATABASE_URL) as a new taxonomy "
        "version; "
        "tags removed from the taxonomy stay on customers and are listed. Exits 1 listing every problem.",
    )
    imp.add_argument(
        "file", metavar="FILE", nargs="?", help="taxonomy file (.yaml, .yml or .json); optional with --template"
    )
    imp.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help="import the built-in taxonomy + this industry template; with FILE, merge FILE over them",
    )
    imp.set_defaults(handler=cmd_taxonomy_import)
    export = sub.add_parser(
        "export",
        help="write the current taxonomy as YAML or JSON",
        description="Write the database's current taxonomy (to stdout, or --out FILE).",
    )
    export.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="output format (default yaml)"
    )
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(handler=cmd_taxonomy_export)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def cmd_suggest(args: argparse.Namespace, settings: Settings) -> int:
    """Dry-run a taxonomy over messages (stdin lines or --text): one JSON line each, no database."""
    from core.taxonomy.dryrun import run_suggest
    from tagging.loader import TaxonomyError

    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    try:
        return run_suggest(args.taxonomy, args.template, args.text, args.workers, sys.stdin, sys.stdout)
    except TaxonomyError as exc:
        print(f"kebiao suggest: {exc}", file=sys.stderr)
        return 1


def cmd_manifest_build(args: argparse.Namespace, settings: Settings) -> int:
    """Write the Teams app package (manifest.json + icons) for the bot's app id."""
    from manifest.build import ManifestError, write_package

    app_id = args.app_id or settings.teams.app_id
    if not app_id:
        print("kebiao manifest build: no app id; pass --app-id GUID or set MICROSOFT_APP_ID", file=sys.stderr)
        return 1
    try:
        out = write_package(args.out, app_id)
    except ManifestError as exc:
        print(f"kebiao manifest build: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _add_manifest_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `kebiao manifest build` verb."""
    group = verbs.add_parser("manifest", help="build the Teams app package", description="Teams app package.")
    sub = group.add_subparsers(dest="manifest_action", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="write the Teams app package zip (manifest.json, color.png, outline.png)",
        description="Write the Teams app package for upload to Teams. The app id (a GUID) defaults to "
        "MICROSOFT_APP_ID; exits 1 when it is missing or not a GUID.",
    )
    build.add_argument("--app-id", metavar="GUID", help="bot app id (default: MICROSOFT_APP_ID)")
    build.add_argument("--out", metavar="FILE.zip", default="kebiao.zip", help="output (default: kebiao.zip)")
    build.set_defaults(handler=cmd_manifest_build)


def _run_db(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    """Open the database (migrating it), run `work`, close; database problems exit 1 with the reason."""

    async def run() -> int:
        database = await open_database(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except DatabaseError as exc:
        print(f"kebiao: {exc}", file=sys.stderr)
        return 1


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Create or migrate the database to the newest schema."""

    async def work(database: Database) -> int:
        print(f"database at revision {await database.current_revision()}")
        return 0

    return _run_db(settings, work)


def cmd_taxonomy_import(args: argparse.Namespace, settings: Settings) -> int:
    """Store a taxonomy file as the new current version and report kept tags it no longer contains."""
    if args.file is None and args.template is None:
        print("kebiao taxonomy import: give FILE, --template NAME, or both", file=sys.stderr)
        return 2
    try:
        if args.file is None:
            taxonomy = load_builtin(args.template)
        else:
            taxonomy = load_taxonomy_file(args.file)
            if args.template is not None:
                taxonomy = merge_taxonomies(load_builtin(args.template), taxonomy, source=args.file)
    except TaxonomyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    origin = " over ".join(
        part for part in (args.file, f"built-in + {args.template}" if args.template else None) if part
    )

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            change = await import_taxonomy(uow, taxonomy, "cli", datetime.now(UTC), note=f"imported {origin}")
        print(f"taxonomy version {change.version.version} is current ({origin})")
        for orphan in change.orphaned:
            print(
                f"kept: {orphan.dimension}/{orphan.tag} is no longer in the taxonomy but {orphan.customers} "
                "customers still hold it"
            )
        return 0

    return _run_db(settings, work)


def cmd_taxonomy_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the current taxonomy as YAML or JSON."""

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            # Nothing stored yet: show what the first start would load, so it can serve as a template.
            print(
                "kebiao taxonomy export: no taxonomy stored yet; writing the one the first start would load",
                file=sys.stderr,
            )
        taxonomy = current.taxonomy if current is not None else _initial_taxonomy(settings)
        text = dump_taxonomy(taxonomy, args.format)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0

    return _run_db(settings, work)


def cmd_customers_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import customers (and their tags) from CSV/XLSX, all or nothing; --dry-run writes nothing."""
    try:
        # row problems come back with the rows so the import adds its own and one run shows them all
        parsed = parse_customer_file(args.file, collect=True)
    except ImportFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
            taxonomy = current.taxonomy if current else _initial_taxonomy(settings)
        try:
            async with database.unit_of_work() as uow:
                if current is None:
                    await ensure_taxonomy(uow, taxonomy, "cli", datetime.now(UTC))
                summary = await import_customers(
                    uow,
                    taxonomy,
                    rules,
                    parsed.rows,
                    actor="import",
                    now=datetime.now(UTC),
                    dry_run=args.dry_run,
                    problems=parsed.problems,
                )
        except ImportFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        print(summary)
        return 0

    return _run_db(settings, work)


def cmd_customers_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print a customer's tags grouped by dimension and the newest events, as a given user sees them."""
    from zoneinfo import ZoneInfo

    async def work(database: Database) -> int:
        now = datetime.now(UTC)
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
            if current is None:
                hint = "run 'kebiao taxonomy import FILE' or start the server once"
                print(f"kebiao: no taxonomy loaded yet; {hint}", file=sys.stderr)
                return 1
            viewer = User("cli", Role.ADMIN)
            if args.viewer:
                found = await get_user(uow, args.viewer)
                viewer = found if found is not None else User(args.viewer, Role.AGENT)
            resolution = await resolve_customer(uow, args.customer)
            if resolution.customer is None:
                names = ", ".join(f"{c.name} (#{c.id})" for c in resolution.candidates)
                hint = f"; did you mean: {names}" if names else ""
                print(f"kebiao: no single customer matches {args.customer!r}{hint}", file=sys.stderr)
                return 1
            summary = await customer_summary(uow, current.taxonomy, resolution.customer.id, viewer, now)
            events = await customer_history(uow, current.taxonomy, resolution.customer.id, viewer, 0, args.history)
        print(render_customer_text(summary, events, ZoneInfo(settings.timezone)))
        return 0

    return _run_db(settings, work)


def cmd_users_set_role(args: argparse.Namespace, settings: Settings) -> int:
    """Give a user a role (and the regions a manager looks after)."""

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            user = await set_role(uow, args.user_id, Role(args.role), args.region, datetime.now(UTC))
        regions = ", ".join(user.regions) or "all regions"
        print(f"{user.id}: {user.role.value} ({regions})")
        return 0

    try:
        return _run_db(settings, work)
    except ValueError as exc:
        print(f"kebiao users set-role: {exc}", file=sys.stderr)
        return 1


def _add_data_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kebiao db upgrade`, `customers import`, `users set-role` (all on KEBIAO_DATABASE_URL)."""
    db = verbs.add_parser("db", help="database schema", description="Database schema (KEBIAO_DATABASE_URL).")
    db_sub = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser(
        "upgrade", help="create or migrate the database", description="Apply every pending migration."
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)
    customers = verbs.add_parser("customers", help="customer data", description="Customer data.")
    c_sub = customers.add_subparsers(dest="customers_action", metavar="ACTION", required=True)
    imp = c_sub.add_parser(
        "import",
        help="import customers and tags from CSV/XLSX (all or nothing)",
        description="Import FILE.csv or FILE.xlsx (design.md 3.6). Every bad row is printed as "
        "'row N, column C: reason' and nothing is written (exit 1). Importing the same file twice "
        "changes nothing.",
    )
    imp.add_argument("file", metavar="FILE", help="customer file (.csv or .xlsx)")
    imp.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    imp.set_defaults(handler=cmd_customers_import)
    show = c_sub.add_parser(
        "show",
        help="show a customer's tags by dimension and recent history",
        description="Show the tags CUSTOMER holds (name, CRM id or WeCom external id; forgiving match) "
        "and the newest tag events. --as shows what that user may see (agents never see managers-only tags).",
    )
    show.add_argument("customer", metavar="CUSTOMER", help="customer name, CRM id or WeCom external user id")
    show.add_argument("--as", dest="viewer", metavar="USER_ID", help="see it as this user (default: admin view)")
    show.add_argument("--history", type=_positive_int, default=10, metavar="N", help="events to list (default 10)")
    show.set_defaults(handler=cmd_customers_show)
    users = verbs.add_parser("users", help="users and roles", description="Users and roles.")
    u_sub = users.add_subparsers(dest="users_action", metavar="ACTION", required=True)
    role = u_sub.add_parser(
        "set-role",
        help="set a user's role and regions",
        description="Set USER_ID's role. Managers get alerts for customers in their regions (none = all).",
    )
    role.add_argument("user_id", metavar="USER_ID", help="Teams AAD object id or WeCom userid")
    role.add_argument("role", choices=[r.value for r in Role], help="agent, manager or admin")
    role.add_argument("--region", action="append", default=[], metavar="R", help="a region (repeatable)")
    role.set_defaults(handler=cmd_users_set_role)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a WeCom chat-archive export (JSONL): suggestions and auto-applied tags per customer."""
    from core.importing.ingest import CheckpointError, ingest_archive
    from storage.outbox import SqlAlertStore

    path = Path(args.file)
    if not path.is_file():
        print(f"kebiao ingest: {path} is not a file", file=sys.stderr)
        return 1
    tty = sys.stderr.isatty()
    last_log = [0.0]

    def progress(done: int, total: int, lines: int) -> None:
        share = done / total if total else 1.0
        if tty:
            bar = "#" * int(share * 30)
            print(f"\r[{bar:<30}] {share:6.1%} {lines} lines", end="", file=sys.stderr, flush=True)
        elif asyncio.get_running_loop().time() - last_log[0] >= 5.0:
            last_log[0] = asyncio.get_running_loop().time()
            log.info("ingest: %.1f%% (%d lines)", share * 100, lines)

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            async with database.unit_of_work() as uow:
                current = await ensure_taxonomy(uow, _initial_taxonomy(settings), "cli", datetime.now(UTC))
        holder = MatcherHolder()
        await holder.rebuild(current.taxonomy)
        assert holder.current is not None
        rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
        try:
            store = SqlAlertStore(database.engine)  # alert uow: ingest also records customer activity
            summary = await ingest_archive(
                store, current.taxonomy, holder.current, rules, path, resume=args.resume, progress=progress
            )
        except CheckpointError as exc:
            print(f"kebiao ingest: {exc}", file=sys.stderr)
            return 1
        if tty:
            print(file=sys.stderr)
        for problem in summary.bad:
            print(f"{path}: {problem}", file=sys.stderr)
        print(summary)
        return 1 if summary.bad else 0

    return _run_db(settings, work)


def cmd_wecom_sync_tags(args: argparse.Namespace, settings: Settings) -> int:
    """Import WeCom's corp tags into the `wecom` dimension, then push every customer's tags to WeCom."""
    wecom = settings.wecom
    if not (wecom.corp_id and wecom.secret):
        print("kebiao wecom sync-tags: set WECOM_CORP_ID and WECOM_SECRET", file=sys.stderr)
        return 1

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        taxonomy = current.taxonomy if current else _initial_taxonomy(settings)
        background = Background()
        async with aiohttp.ClientSession() as session:
            client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
            from storage.sync_pending import SqlPendingTagPushes

            pending = SqlPendingTagPushes(database.engine)  # push_all drains the pending pushes first
            sync = WeComTagSync(
                client, database, SqlChannelStore(database.engine), lambda: taxonomy, background, pending
            )
            try:
                result = await sync.import_corp_tags()
                pushed, failed = (0, 0) if args.import_only else await sync.push_all()
            except WeComApiError as exc:
                print(f"kebiao wecom sync-tags: {exc}", file=sys.stderr)
                return 1
            finally:
                await background.close()
        version = f"taxonomy version {result.change.version.version}" if result.change else "taxonomy unchanged"
        print(f"{len(result.tags)} WeCom corp tags imported ({version}); {pushed} customers pushed, {failed} failed")
        for skipped in result.skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
        return 1 if failed else 0

    return _run_db(settings, work)


def _add_wecom_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kebiao ingest FILE.jsonl [--resume]` and `kebiao wecom sync-tags`."""
    ingest = verbs.add_parser(
        "ingest",
        help="turn a WeCom chat-archive export (JSONL) into tag suggestions",
        description="Read FILE.jsonl exported from WeCom's 会话内容存档 (decrypted; one JSON object per line with "
        "msgid, from, tolist, roomid, msgtime, msgtype, text.content). Text from customers (external user ids "
        "wm…/wo… of known customers) is matched: auto_apply tags are applied, others stored as suggestions. "
        "Idempotent by msgid; a checkpoint FILE.jsonl.kebiao-checkpoint allows --resume. Bad lines are "
        "printed with their line number and skipped; the exit status is then 1.",
    )
    ingest.add_argument("file", metavar="FILE.jsonl", help="chat-archive export, one JSON object per line")
    ingest.add_argument("--resume", action="store_true", help="continue after the last checkpoint")
    ingest.set_defaults(handler=cmd_ingest)
    group = verbs.add_parser("wecom", help="WeCom integration", description="WeCom integration.")
    sub = group.add_subparsers(dest="wecom_action", metavar="ACTION", required=True)
    sync = sub.add_parser(
        "sync-tags",
        help="import WeCom corp tags and push Kebiao's tags to WeCom",
        description="Import every WeCom corp customer tag into the dimension 'wecom' (a new taxonomy version "
        "when it changed), then mark every customer's active Kebiao tags on WeCom (owner userid + "
        "wecom_external_userid), creating missing corp tags. Needs WECOM_CORP_ID, WECOM_SECRET.",
    )
    sync.add_argument("--import-only", action="store_true", help="only import WeCom's tags; push nothing")
    sync.set_defaults(handler=cmd_wecom_sync_tags)


def cmd_reports_tags(args: argparse.Namespace, settings: Settings) -> int:
    """Print the tag-health report (usage, retire/merge candidates, customers near the cap)."""
    import json

    from core.reports.tag_health import render_report_text, report_to_data, tag_health_report
    from storage.reports import SqlReportSource

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            print("kebiao reports tags: no taxonomy stored yet; start the server once or import one", file=sys.stderr)
            return 1
        report = await tag_health_report(
            SqlReportSource(database.engine), current.taxonomy, datetime.now(UTC), settings.tag_hard_cap
        )
        if args.json:
            print(json.dumps(report_to_data(report), ensure_ascii=False, indent=2))
        else:
            sys.stdout.write(render_report_text(report))
        return 0

    return _run_db(settings, work)


def _add_reports_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kebiao reports tags [--json]`."""
    group = verbs.add_parser("reports", help="tag-health reports", description="Tag-health reports.")
    sub = group.add_subparsers(dest="reports_action", metavar="ACTION", required=True)
    tags = sub.add_parser(
        "tags",
        help="tag usage, retire and merge candidates, customers near the tag cap",
        description="Per tag: active holders, added in the last 30 days, suggestions accepted/rejected/pending "
        "and the accept rate, last use. Retire candidates: no holders and unused for 90 days or never used. "
        "Merge candidates: same-dimension tags whose holders overlap >= 80%% (Jaccard, >= 5 holders each) or "
        "whose names are one edit apart. Customers at the soft tag cap.",
    )
    tags.add_argument("--json", action="store_true", help="print the report as JSON")
    tags.set_defaults(handler=cmd_reports_tags)


def build_parser() -> argparse.ArgumentParser:
    """The `kebiao` argument parser; each verb's handler is stored as `handler`."""
    parser = argparse.ArgumentParser(
        prog="kebiao", description="Kebiao (客标): customer tagging in Teams and WeCom."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    serve = verbs.add_parser("serve", help="serve the bot and admin API (HOST, PORT)")
    serve.set_defaults(handler=cmd_serve)
    suggest = verbs.add_parser("suggest", help="dry-run a taxonomy over chat lines (stdin or --text)")
    source = suggest.add_mutually_exclusive_group()
    source.add_argument("--taxonomy", metavar="FILE", help="taxonomy file (.yaml/.yml/.json)")
    source.add_argument("--template", metavar="NAME", help="built-in industry template (default: none)")
    suggest.add_argument("--text", help="tag this one message instead of reading stdin")
    suggest.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="worker processes")
    suggest.set_defaults(handler=cmd_suggest)
    _add_taxonomy_verbs(verbs)
    _add_data_verbs(verbs)
    _add_manifest_verbs(verbs)
    _add_wecom_verbs(verbs)
    _add_alerts_verbs(verbs)
    _add_reports_verbs(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kebiao` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # Migration chatter belongs in -v output; the CLI's own lines are what a person reads.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
