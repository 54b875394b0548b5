"""Composition root: create_app(settings) wires every part of the server; the `kebiao` CLI lives in cli/."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from admin.routes import AdminServices, setup_admin
from bots.teams.adapter import TeamsEndpoint, close_adapter, create_adapter
from bots.teams.auth import build_authentication
from bots.teams.bot import KebiaoBot
from bots.wecom.background import Background
from bots.wecom.client import WeComClient
from bots.wecom.crypto import WeComCrypto
from bots.wecom.handlers import WeComHandlers, WeComServices
from bots.wecom.inbox import DRAIN_INTERVAL as INBOX_DRAIN_INTERVAL
from bots.wecom.inbox import CallbackInbox
from bots.wecom.routes import CALLBACK_PATH, WeComCallback
from bots.wecom.routes import CHANNEL as INBOX_CHANNEL
from bots.wecom.sync import DRAIN_INTERVAL, WeComTagSync
from config import Settings, check_serve, start_up_line
from core.chat.service import ChatService
from core.chat.turns import TurnLeases
from core.learning.capture import Recorder
from core.learning.suggester import ModelCell, merged
from core.records import TaxonomyVersion
from core.tags.assignments import TaggingRules
from core.taxonomy.matcher_holder import MatcherHolder
from core.taxonomy.store import ensure_taxonomy
from storage.channels import SqlChannelStore
from storage.database import Database, open_database
from storage.learning import SqlLearningStore
from storage.lease_holder import LeaseHolder
from storage.personal import SqlPersonalTagStore
from storage.turns import SqlTurnStore
from tagging.builtin import initial_taxonomy
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
    """Build the aiohttp application; every long-lived resource is one cleanup_ctx.

    Raises ConfigError when the settings cannot serve (production without Bot Framework credentials).
    """
    check_serve(settings)
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_learning_ctx)
    app.cleanup_ctx.append(_teams_ctx)
    app.cleanup_ctx.append(_alerts_ctx)
    if settings.crm.enabled:
        app.cleanup_ctx.append(_crm_ctx)
    app.router.add_post("/api/messages", teams_messages)
    if settings.wecom.enabled:
        app.cleanup_ctx.append(_wecom_ctx)
        app.router.add_get(CALLBACK_PATH, wecom_verify)
        app.router.add_post(CALLBACK_PATH, wecom_receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if settings.admin_token:
        setup_admin(app, settings.admin_token, _admin_services)
    _setup_console(app, settings)
    app.on_startup.append(_announce)  # after every cleanup_ctx has started
    return app


YOUNG_OBJECTS = 20_000  # new container objects held before the youngest generation is collected (Python: 700)


async def settle_heap(_app: web.Application | None = None) -> None:
    """Keep what start-up built (jieba's dictionary, the matcher, the taxonomy) out of the collector's walks.

    A full garbage collection walks every tracked object; with the dictionary loaded each one paused the
    process for about 120 ms, and under load one came every few seconds (a p99 spike per replica). Frozen
    objects are never walked (reference counting still frees them); whatever was frozen before is unfrozen
    and collected first, so cyclic garbage among it is not kept. `kebiao serve` does this once started and
    again after each taxonomy swap (the new matcher is long-lived too); an app built by a test or benchmark
    collects as Python does by default unless it asks.

    The youngest generation is collected once YOUNG_OBJECTS more container objects are alive than after the
    last collection, not 700: a chat turn holds a few thousand (the activity and its models, the card, the
    rows) until it ends, so at 700 every turn set off several collections, each walking what the turns in
    flight held, about 0.1 ms of a 1.9 ms turn. Objects freed by reference counting, nearly all of them, never
    wait for a collection; only cyclic garbage waits a little longer.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


async def _announce(app: web.Application) -> None:
    """One start-up line: address, database (password masked), taxonomy version, channels, authentication."""
    cell = app.get(TAXONOMY)
    version = cell.version.version if cell is not None and cell.version is not None else None
    log.info("%s", start_up_line(app[SETTINGS], version))


# ---------------------------------------------------------------- manager console

CONSOLE = web.AppKey("console_cell", object)


def _setup_console(app: web.Application, settings: Settings) -> None:
    """Mount /console; its services (store, sign-in adapters) are filled in once storage is open."""
    from console.web import PREFIX, ServicesCell, create_console

    cell = ServicesCell()
    app[CONSOLE] = cell
    app.add_subapp(PREFIX, create_console(cell))
    app.cleanup_ctx.append(_console_ctx)


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    """Console services over the open database; closes the sign-in HTTP sessions at shutdown."""
    import secrets

    from console.teams_sso import AadTokenValidator
    from console.web import ConsoleServices, ServicesCell, WeComLogin
    from storage.console import ConsoleStore
    from storage.reports import SqlReportSource

    settings, database, holder, cell = app[SETTINGS], app[DATABASE], app[MATCHERS], app[TAXONOMY]
    console = settings.console
    if not console.secret:
        log.warning("KEBIAO_CONSOLE_SECRET is unset: console sessions end when this process stops")

    async def refresh(version: int) -> bool:
        await _refresh_taxonomy(database, holder, cell)
        return cell.version is not None and cell.version.version >= version

    teams = AadTokenValidator(console.aad_jwks_url, console.audience(settings.teams.app_id), console.aad_tenants)
    session = aiohttp.ClientSession()
    wecom = settings.wecom
    login = None
    if wecom.corp_id and wecom.secret and wecom.agent_id:
        client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
        login = WeComLogin(console.wecom_login_url, wecom.corp_id, wecom.agent_id, _WeComSignIn(client))
    services_cell = app[CONSOLE]
    assert isinstance(services_cell, ServicesCell)
    services_cell.services = ConsoleServices(
        store=ConsoleStore(database.engine),
        reports=SqlReportSource(database.engine),
        matcher=lambda: holder.current,
        refresh=refresh,
        rules=TaggingRules.of(settings.timezone, settings.tag_hard_cap),
        teams=teams,
        secret=(console.secret or secrets.token_hex(32)).encode("utf-8"),
        secure_cookies=settings.environment != "development",
        session_seconds=console.session_hours * 3600,
        admin_token=settings.admin_token,
        wecom=login,
        automation=rule_context(settings, database, lambda: cell.taxonomy),
        learning=app[LEARNING],
        clock=lambda: datetime.now(UTC),
    )
    try:
        yield
    finally:
        services_cell.services = None
        await teams.close()
        await session.close()


class _WeComSignIn:
    """core's WeComSignIn port on the WeCom API client (auth/getuserinfo)."""

    def __init__(self, client: WeComClient) -> None:
        self._client = client

    async def userid_for_code(self, code: str) -> str:
        from bots.wecom.client import WeComApiError
        from core.console.ports import SignInError

        try:
            return await self._client.user_for_code(code)
        except (WeComApiError, ValueError) as exc:
            raise SignInError(str(exc)) from exc


def _admin_services(app: web.Application) -> AdminServices:
    """The admin API's services; a taxonomy change refreshes the matcher as the watcher would."""
    from storage.reports import SqlReportSource

    settings, database, holder, cell = app[SETTINGS], app[DATABASE], app[MATCHERS], app[TAXONOMY]

    async def refresh(version: int) -> bool:
        await _refresh_taxonomy(database, holder, cell)
        return cell.version is not None and cell.version.version >= version

    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
    automation = rule_context(settings, database, lambda: cell.taxonomy)
    return AdminServices(
        database, SqlReportSource(database.engine), refresh, rules, automation=automation, learning=app[LEARNING]
    )


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


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open (and migrate) the database, load the taxonomy on first start, build the matcher."""
    settings = app[SETTINGS]
    database = await open_database(settings.database_url)
    try:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            initial = initial_taxonomy(settings.taxonomy_path)
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
    """Rebuild the matcher off the request path and swap it in when the stored version changed.

    A poll reads the version number only (read-only: it never takes SQLite's writer); the document is read
    and parsed, on the event loop, only when that number changed.
    """
    async with database.unit_of_work(read_only=True) as uow:
        number = await uow.taxonomies.current_version()
        if number is None or (cell.version is not None and number == cell.version.version):
            return False
        current = await uow.taxonomies.current()
    if current is None:
        return False
    if await holder.rebuild(current.taxonomy):
        cell.version = current
        log.info("taxonomy version %d now in force", current.version)
        if gc.get_freeze_count():
            await settle_heap()  # the new matcher is long-lived too
        return True
    return False


# ---------------------------------------------------------------- learning

LEARNING = web.AppKey("learning", SqlLearningStore)
MODELS = web.AppKey("models", ModelCell)


async def _learning_ctx(app: web.Application) -> AsyncIterator[None]:
    """The learning store and the learned model in use, polled like the taxonomy (every replica loads the newest)."""
    store = SqlLearningStore(app[DATABASE].engine)
    cell = ModelCell()
    try:
        await cell.refresh(store)
    except Exception:
        log.exception("could not load the learned model; keyword suggestions carry on")
    app[LEARNING], app[MODELS] = store, cell
    poll = app[SETTINGS].learning.poll_seconds
    watcher = asyncio.create_task(_watch_model(store, cell, poll), name="model-watcher")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _watch_model(store: SqlLearningStore, cell: ModelCell, seconds: float) -> None:
    """Pick up a model trained elsewhere (CLI, scheduled job, another replica) without a restart."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await cell.refresh(store)
        except Exception:
            log.exception("learned model refresh failed; keeping version %s", cell.version)


TEAMS = web.AppKey("teams", TeamsEndpoint)


async def _teams_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bot Framework auth + adapter + the Kebiao bot over the chat service, behind POST /api/messages."""
    # This process's name on the leases it takes: a replica that dies mid-turn has its turns retaken at once.
    lease_holder = LeaseHolder(app[DATABASE].engine)
    await lease_holder.start()
    try:
        async with _teams_endpoint(app, SqlChannelStore(app[DATABASE].engine, holder=lease_holder.current)):
            yield
    finally:
        await lease_holder.close()  # after the leases' last writes: this process's leases are free from now on


@contextlib.asynccontextmanager
async def _teams_endpoint(app: web.Application, channels: SqlChannelStore) -> AsyncIterator[None]:
    """The chat service, the adapter and the turn leases over `channels`; app[TEAMS] while they run."""
    settings = app[SETTINGS]
    cell, holder = app[TAXONOMY], app[MATCHERS]
    from storage.outbox import SqlAlertStore

    models, learning = app[MODELS], app[LEARNING]
    chat = ChatService(
        app[DATABASE],
        channels,
        lambda: cell.taxonomy,
        lambda: merged(holder.current, models, cell.taxonomy),
        TaggingRules.of(settings.timezone, settings.tag_hard_cap),
        activity=SqlAlertStore(app[DATABASE].engine),
        events=rule_hooks(settings, app[DATABASE], lambda: cell.taxonomy),
        learning=Recorder(learning),
        personal=SqlPersonalTagStore(app[DATABASE].engine),
        link_key=settings.teams.link_secret.encode("utf-8") or None,
        turns=SqlTurnStore(app[DATABASE].engine),
    )
    if not settings.teams.link_secret and settings.teams.app_id:
        log.warning("KEBIAO_LINK_SECRET is unset: channel link offers work only until this process stops")
    adapter = create_adapter(build_authentication(settings.teams))
    # Leased claims: a retry of a turn that died with its process (lease lapsed) or failed runs again.
    leases = TurnLeases(channels, "teams")
    leases.start()
    app[TEAMS] = TeamsEndpoint(adapter, KebiaoBot(chat, channels), claims=leases)
    try:
        yield
    finally:
        await leases.close()
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

    hooks = rule_hooks(settings, database, lambda: cell.taxonomy)
    models, learning = app[MODELS], app[LEARNING]
    from core.alerts.actions import Action, AlertStatus, act_on_alert
    from storage.outbox import SqlAlertStore

    alert_store = SqlAlertStore(database.engine)  # contact events record churn activity in the same transaction
    chat = ChatService(
        database,
        channels,
        lambda: cell.taxonomy,
        lambda: merged(holder.current, models, cell.taxonomy),
        rules,
        activity=alert_store,  # digests opened in full (显示全部标签) read the alert outbox, as in Teams
        events=hooks,
        learning=Recorder(learning),
        personal=SqlPersonalTagStore(database.engine),
        turns=SqlTurnStore(database.engine),
    )

    async def alert_action(alert_id: int, user_id: str, action: Action, now: datetime) -> AlertStatus:
        return await act_on_alert(alert_store, alert_id, user_id, action, now)

    services = WeComServices(
        alert_store, chat, lambda: cell.taxonomy, rules, client, sync, on_taxonomy, alert_action, events=hooks
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


def alert_deliverers(
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
        deliverers["wecom"] = WeComAlertDeliverer(client, tz=ZoneInfo(settings.timezone))
    if teams_adapter is not None:
        notifier = TeamsNotifier(teams_adapter, settings.teams.app_id)
        deliverers["msteams"] = TeamsAlertDeliverer(
            notifier, SqlChannelStore(database.engine), tz=ZoneInfo(settings.timezone)
        )
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
        deliverers = alert_deliverers(settings, database, session, endpoint.adapter if endpoint else None)
        deliverers.update(webhook_deliverers(settings, session, lambda: cell.taxonomy))
        store, inbound = SqlAlertStore(database.engine), SqlChannelStore(database.engine)
        ctx = rule_context(settings, database, lambda: cell.taxonomy)
        jobs = configure_jobs(settings, store, lambda: cell.taxonomy, deliverers, inbound, *rule_jobs(ctx))
        async with running_scheduler(jobs, settings) as scheduler:
            app[ALERT_SCHEDULER] = scheduler
            if scheduler is not None:
                from scheduler import add_learning_jobs

                add_learning_jobs(scheduler, app[LEARNING], lambda: cell.taxonomy, settings.learning, jobs.tz)
            yield


# ---------------------------------------------------------------- rules and webhooks


def rule_context(settings: Settings, database: Database, taxonomy: Callable[[], Taxonomy]) -> Any:
    """The rules' RuleContext: the same policy, channels, quiet hours and churn score as the alert jobs."""
    from bots.webhook.delivery import resolve_url
    from core.rules.service import RuleContext
    from scheduler import configure_jobs
    from storage.outbox import SqlAlertStore
    from storage.rules import SqlRulesStore

    alerts = configure_jobs(settings, SqlAlertStore(database.engine), taxonomy, {})
    env = settings.webhook_env
    return RuleContext(
        store=SqlRulesStore(database.engine),
        taxonomy=taxonomy,
        tagging=alerts.tagging,
        tz=alerts.tz,
        channels=alerts.channels,
        quiet=alerts.outbox.quiet,
        churn=alerts.churn,
        webhook_url=lambda hook: resolve_url(hook, env),
    )


def rule_jobs(ctx: Any) -> tuple[Callable[[datetime], Awaitable[object]], Callable[[datetime], Awaitable[object]]]:
    """(daily rules, tag-change rules) as the scheduler calls them."""
    from core.rules.service import run_daily, run_tag_rules

    async def daily(now: datetime) -> object:
        return await run_daily(ctx, now)

    async def tags(now: datetime) -> object:
        return await run_tag_rules(ctx, now)

    return daily, tags


def rule_hooks(settings: Settings, database: Database, taxonomy: Callable[[], Taxonomy]) -> Any:
    """Customer events and message rules for chat (ChatEvents)."""
    from core.rules.hooks import RuleHooks

    return RuleHooks(rule_context(settings, database, taxonomy))


def webhook_deliverers(settings: Settings, session: Any, taxonomy: Callable[[], Taxonomy]) -> dict[str, Any]:
    """The outbox deliverer of the `webhook` channel."""
    from bots.webhook.delivery import CHANNEL, WebhookDeliverer

    return {CHANNEL: WebhookDeliverer(session, taxonomy, settings.webhook_env)}


# ---------------------------------------------------------------- CRM sync (KEBIAO_CRM)

CRM_SYNC = web.AppKey("crm_sync", object)  # the CrmSync the scheduled job runs; absent when KEBIAO_CRM is unset


def _dynamics_connector(settings: Settings) -> Any:
    from crm.dynamics.connector import DynamicsConnector, DynamicsSettings, TagTable

    crm = settings.crm
    return DynamicsConnector(
        DynamicsSettings(
            url=crm.dynamics_url,
            tenant_authority=crm.dynamics_authority,
            client_id=crm.dynamics_client_id,
            client_secret=crm.dynamics_client_secret,
            tags_field=crm.dynamics_tags_field,
            page_size=crm.page_size or 5000,
            ca_bundle=crm.ca_bundle,
            attributes=crm.dynamics_attributes,
            tags_table=TagTable(
                crm.dynamics_tags_table,
                crm.dynamics_tags_table_key,
                crm.dynamics_tags_table_name,
                {kind: (lookup, collection) for kind, lookup, collection in crm.dynamics_tags_table_links},
            )
            if crm.dynamics_tags_table
            else None,
        )
    )


def _zoho_connector(settings: Settings) -> Any:
    from crm.zoho.connector import ZohoConnector, ZohoSettings

    crm = settings.crm
    return ZohoConnector(
        ZohoSettings(
            accounts_url=crm.zoho_accounts_url,
            api_base=crm.zoho_api_base,
            client_id=crm.zoho_client_id,
            client_secret=crm.zoho_client_secret,
            refresh_token=crm.zoho_refresh_token,
            per_page=crm.page_size or 200,
            ca_bundle=crm.ca_bundle,
            attributes=crm.zoho_attributes,
        )
    )


CRM_CONNECTORS = {"dynamics": _dynamics_connector, "zoho": _zoho_connector}


def build_crm_sync(settings: Settings, database: Database, taxonomy: Any) -> Any:
    """The CrmSync for KEBIAO_CRM on this database; `taxonomy` returns the taxonomy in force."""
    import os
    import socket
    from datetime import timedelta

    from core.crm.sync import CrmSync, SyncOptions
    from storage.crm import SqlCrmStore

    crm = settings.crm
    options = SyncOptions(
        lease=timedelta(minutes=max(5, crm.every_minutes)), write_managers_only=crm.write_managers_only
    )
    owner = f"{socket.gethostname()}:{os.getpid()}"
    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
    connector = CRM_CONNECTORS[crm.kind](settings)
    return CrmSync(SqlCrmStore(database.engine), connector, taxonomy, rules, owner, options)


async def _crm_ctx(app: web.Application) -> AsyncIterator[None]:
    """The scheduled CRM sync job on the alert scheduler (none when KEBIAO_SCHEDULER=off)."""
    from scheduler import add_crm_job

    settings = app[SETTINGS]
    cell = app[TAXONOMY]
    sync = build_crm_sync(settings, app[DATABASE], lambda: cell.taxonomy)
    app[CRM_SYNC] = sync
    scheduler = app.get(ALERT_SCHEDULER)
    if scheduler is not None:
        add_crm_job(scheduler, sync.run, settings.crm.every_minutes)  # type: ignore[arg-type]
    try:
        yield
    finally:
        await sync.connector.close()
