"""Frozen settings read once from the environment (and an optional .env file)."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.crm.port import AttributeField
from core.loopback import is_loopback_host

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/kebiao.db"
DEFAULT_WECOM_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin"
ENVIRONMENTS = ("development", "production", "test")  # KEBIAO_ENV values; anything else is refused
PUBLIC_HOST = "0.0.0.0"  # the default listen address with Bot Framework credentials
LOOPBACK_HOST = "127.0.0.1"  # the default without them (emulator mode)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class TeamsSettings:
    """Bot Framework credentials; an empty app_id means local/emulator mode."""

    app_id: str = ""
    app_password: str = field(default="", repr=False)
    app_type: str = "MultiTenant"
    app_tenant_id: str = ""
    # Signs the Link button of channel-name offers: KEBIAO_LINK_SECRET, else derived from the console secret or
    # the app password (every replica derives the same); empty: a random key per process.
    link_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class WeComSettings:
    """WeCom self-built app; `enabled` once corp id, token and AES key are all set."""

    corp_id: str = ""
    token: str = field(default="", repr=False)
    encoding_aes_key: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    agent_id: str = ""
    api_base: str = DEFAULT_WECOM_API_BASE

    @property
    def enabled(self) -> bool:
        return bool(self.corp_id and self.token and self.encoding_aes_key)


@dataclass(frozen=True)
class AlertSettings:
    """Alert jobs: cron times (local), quiet hours, expiry warning days, churn weights and threshold."""

    alert_time: str = "09:00"  # expiry digests
    churn_time: str = "09:30"
    expire_every_minutes: int = 15
    outbox_every_seconds: int = 30
    quiet_hours: str = "22:00-08:00"  # "off" disables
    expiry_warn_days: int = 7
    expiry_warn_tags: tuple[tuple[str, int], ...] = ()
    churn_threshold: float = 0.6
    churn_weights: tuple[tuple[str, float], ...] = ()
    churn_silence_days: int = 30
    churn_contract_days: int = 30
    churn_repeat_days: int = 7
    run_at_start: bool = False
    suggestion_expiry_days: int = 14  # pending suggestions older than this become `expired`
    rules_time: str = "09:40"  # the daily automation rules
    rule_tags_every_seconds: int = 60  # tag-change rules: how often the tag-event log is read


DEFAULT_AAD_JWKS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
DEFAULT_WECOM_LOGIN_URL = "https://login.work.weixin.qq.com/wwlogin/sso/login"


@dataclass(frozen=True)
class ConsoleSettings:
    """The manager console: session signing key, public host, Teams SSO (Entra ID) and WeCom web sign-in."""

    secret: str = field(default="", repr=False)
    public_host: str = ""
    aad_audience: str = ""
    aad_jwks_url: str = DEFAULT_AAD_JWKS_URL
    aad_tenants: tuple[str, ...] = ()
    wecom_login_url: str = DEFAULT_WECOM_LOGIN_URL
    session_hours: int = 8

    def audience(self, app_id: str) -> str:
        """The Teams SSO token audience: configured, or api://<public host>/<app id>."""
        if self.aad_audience:
            return self.aad_audience
        return f"api://{self.public_host}/{app_id}" if self.public_host and app_id else ""


@dataclass(frozen=True)
class LearningSettings:
    """Learning from decisions: retention, what "enough" means, when the scheduled job retrains."""

    retention_days: int = 365  # examples and remembered message texts older than this are deleted
    min_examples: int = 30  # labelled texts a tag needs before it can get learned suggestions
    min_positives: int = 10
    min_precision: float = 0.8  # cross-validated precision a tag must reach at its threshold
    threshold: float = 0.5  # lowest calibrated probability that suggests
    train_after: int = 50  # new examples since the last model before the scheduled job retrains
    train_every_minutes: int = 30
    poll_seconds: float = 10.0  # how often each replica looks for a newer stored model


CRM_KINDS = ("dynamics", "zoho")
# Basic attributes each connector reads into customers by default: `attribute=[record kind.]field`, comma-separated.
CRM_ATTRIBUTES = {
    "dynamics": "industry=account.industrycode,size=account.numberofemployees,region=address1_stateorprovince,"
    "role=contact.accountrolecode",
    "zoho": "industry=Accounts.Industry,size=Accounts.Employees,region=Accounts.Billing_State,"
    "region=Contacts.Mailing_State,role=Contacts.Title",
}
CRM_RECORD_KINDS = {"dynamics": ("account", "contact"), "zoho": ("Accounts", "Contacts")}


@dataclass(frozen=True)
class CrmSettings:
    """KEBIAO_CRM and its connector's settings; secrets come only from the environment and are never shown."""

    kind: str = ""  # "" = no CRM sync
    every_minutes: int = 15
    write_managers_only: bool = False
    page_size: int = 0  # 0 = the connector's documented maximum
    ca_bundle: str | None = None
    dynamics_url: str = ""
    dynamics_authority: str = ""
    dynamics_client_id: str = ""
    dynamics_client_secret: str = field(default="", repr=False)
    dynamics_tags_field: str = "kb_tags"
    dynamics_attributes: tuple[AttributeField, ...] = ()
    dynamics_tags_table: str = ""  # entity set of a related tags table; "" = tags in the choice column
    dynamics_tags_table_key: str = ""
    dynamics_tags_table_name: str = "kb_name"
    dynamics_tags_table_links: tuple[tuple[str, str, str], ...] = ()  # (kind, lookup, collection)
    zoho_attributes: tuple[AttributeField, ...] = ()
    zoho_accounts_url: str = "https://accounts.zoho.com"
    zoho_api_base: str = "https://www.zohoapis.com"
    zoho_client_id: str = ""
    zoho_client_secret: str = field(default="", repr=False)
    zoho_refresh_token: str = field(default="", repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.kind)

    def missing(self) -> list[str]:
        """The variables the chosen connector needs but that are unset."""
        needs = {
            "dynamics": {
                "KEBIAO_CRM_DYNAMICS_URL": self.dynamics_url,
                "KEBIAO_CRM_DYNAMICS_AUTHORITY": self.dynamics_authority,
                "KEBIAO_CRM_DYNAMICS_CLIENT_ID": self.dynamics_client_id,
                "KEBIAO_CRM_DYNAMICS_CLIENT_SECRET": self.dynamics_client_secret,
            },
            "zoho": {
                "KEBIAO_CRM_ZOHO_CLIENT_ID": self.zoho_client_id,
                "KEBIAO_CRM_ZOHO_CLIENT_SECRET": self.zoho_client_secret,
                "KEBIAO_CRM_ZOHO_REFRESH_TOKEN": self.zoho_refresh_token,
            },
        }.get(self.kind, {})
        return [name for name, value in needs.items() if not value]


def _crm_settings(get: Callable[[str], str | None]) -> CrmSettings:
    table = _tags_table(get)
    return CrmSettings(
        kind=(get("KEBIAO_CRM") or "").strip().lower(),
        every_minutes=_int(get("KEBIAO_CRM_SYNC_MINUTES"), "KEBIAO_CRM_SYNC_MINUTES", 15),
        write_managers_only=_switch(get("KEBIAO_CRM_WRITE_MANAGERS_ONLY"), "KEBIAO_CRM_WRITE_MANAGERS_ONLY", False),
        page_size=_int(get("KEBIAO_CRM_PAGE_SIZE"), "KEBIAO_CRM_PAGE_SIZE", 0),
        ca_bundle=get("KEBIAO_CRM_CA_BUNDLE") or None,
        dynamics_url=(get("KEBIAO_CRM_DYNAMICS_URL") or "").strip().rstrip("/"),
        dynamics_authority=(get("KEBIAO_CRM_DYNAMICS_AUTHORITY") or "").strip().rstrip("/"),
        dynamics_client_id=(get("KEBIAO_CRM_DYNAMICS_CLIENT_ID") or "").strip(),
        dynamics_client_secret=(get("KEBIAO_CRM_DYNAMICS_CLIENT_SECRET") or "").strip(),
        dynamics_tags_field=(get("KEBIAO_CRM_DYNAMICS_TAGS_FIELD") or "kb_tags").strip(),
        zoho_accounts_url=(get("KEBIAO_CRM_ZOHO_ACCOUNTS_URL") or "https://accounts.zoho.com").strip().rstrip("/"),
        zoho_api_base=(get("KEBIAO_CRM_ZOHO_API_BASE") or "https://www.zohoapis.com").strip().rstrip("/"),
        zoho_client_id=(get("KEBIAO_CRM_ZOHO_CLIENT_ID") or "").strip(),
        zoho_client_secret=(get("KEBIAO_CRM_ZOHO_CLIENT_SECRET") or "").strip(),
        zoho_refresh_token=(get("KEBIAO_CRM_ZOHO_REFRESH_TOKEN") or "").strip(),
        dynamics_attributes=_attributes(get, "dynamics"),
        dynamics_tags_table=table[0],
        dynamics_tags_table_key=table[1],
        dynamics_tags_table_name=table[2],
        dynamics_tags_table_links=table[3],
        zoho_attributes=_attributes(get, "zoho"),
    )


def _tags_table(get: Callable[[str], str | None]) -> tuple[str, str, str, tuple[tuple[str, str, str], ...]]:
    """KEBIAO_CRM_DYNAMICS_TAGS_TABLE and its names: (entity set, key, name column, (kind, lookup, collection)...)."""
    set_name = (get("KEBIAO_CRM_DYNAMICS_TAGS_TABLE") or "").strip()
    if not set_name:
        return "", "", "kb_name", ()
    links: list[tuple[str, str, str]] = []
    for kind, default in (("account", "kb_accountid/kb_account_tags"), ("contact", "kb_contactid/kb_contact_tags")):
        name = f"KEBIAO_CRM_DYNAMICS_TAGS_TABLE_{kind.upper()}"
        lookup, slash, collection = (get(name) or default).strip().partition("/")
        if not (lookup.strip() and slash and collection.strip()):
            raise ConfigError(
                f"{name}: give the tag row's lookup to the {kind} and the {kind}'s collection of tag rows as "
                f"lookup/collection (navigation property names), e.g. {default}"
            )
        links.append((kind, lookup.strip(), collection.strip()))
    key = (get("KEBIAO_CRM_DYNAMICS_TAGS_TABLE_KEY") or "").strip() or f"{set_name.removesuffix('s')}id"
    name = (get("KEBIAO_CRM_DYNAMICS_TAGS_TABLE_NAME") or "kb_name").strip()
    return set_name, key, name, tuple(links)


def _attributes(get: Callable[[str], str | None], connector: str) -> tuple[AttributeField, ...]:
    """KEBIAO_CRM_<CONNECTOR>_ATTRIBUTES: `industry=account.industrycode,role=contact.jobtitle`; `none` = off."""
    name = f"KEBIAO_CRM_{connector.upper()}_ATTRIBUTES"
    raw = (get(name) or "").strip() or CRM_ATTRIBUTES[connector]
    if raw.lower() == "none":
        return ()
    kinds = CRM_RECORD_KINDS[connector]
    out: list[AttributeField] = []
    for item in (part.strip() for part in raw.split(",")):
        attribute, _, target = (x.strip() for x in item.partition("="))
        kind, dot, column = target.rpartition(".")
        if not attribute or not column or (dot and kind not in kinds):
            raise ConfigError(
                f"{name}: {item!r} is not attribute=field or attribute=kind.field (kind one of "
                f"{', '.join(kinds)}), e.g. industry={kinds[0]}.{CRM_ATTRIBUTES[connector].split('.')[1].split(',')[0]}"
            )
        out.append(AttributeField(attribute, kind, column))
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Everything the process needs, read once; adapters get only their slice."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 3978
    taxonomy_path: str | None = None
    timezone: str = "Asia/Shanghai"
    admin_token: str = field(default="", repr=False)
    scheduler_enabled: bool = True
    environment: str = "development"
    tag_hard_cap: int = 100
    # KEBIAO_ALLOW_UNAUTHENTICATED: serve without Bot Framework credentials on a non-loopback address.
    allow_unauthenticated: bool = False
    teams: TeamsSettings = TeamsSettings()
    wecom: WeComSettings = WeComSettings()
    alerts: AlertSettings = AlertSettings()
    # KEBIAO_WEBHOOK_* variables: webhook URLs and signing secrets the taxonomy names (never the file itself).
    webhook_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    console: ConsoleSettings = ConsoleSettings()
    learning: LearningSettings = LearningSettings()
    crm: CrmSettings = CrmSettings()

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
        """Build settings from `environ` (default os.environ) over an optional .env file."""
        values: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            values.update(_read_dotenv(dotenv))
        values.update(os.environ if environ is None else environ)
        get = values.get
        app_id = (get("MICROSOFT_APP_ID") or "").strip()
        settings = cls(
            database_url=get("KEBIAO_DATABASE_URL") or DEFAULT_DATABASE_URL,
            # Without credentials (emulator mode) nobody is authenticated: listen on loopback unless told otherwise.
            host=(get("HOST") or "").strip() or (PUBLIC_HOST if app_id else LOOPBACK_HOST),
            port=_int(get("PORT"), "PORT", 3978),
            taxonomy_path=get("KEBIAO_TAXONOMY") or None,
            timezone=get("KEBIAO_TIMEZONE") or "Asia/Shanghai",
            admin_token=get("KEBIAO_ADMIN_TOKEN") or "",
            scheduler_enabled=_switch(get("KEBIAO_SCHEDULER"), "KEBIAO_SCHEDULER", True),
            environment=(get("KEBIAO_ENV") or "development").strip().lower(),
            tag_hard_cap=_int(get("KEBIAO_TAG_HARD_CAP"), "KEBIAO_TAG_HARD_CAP", 100),
            allow_unauthenticated=_switch(get("KEBIAO_ALLOW_UNAUTHENTICATED"), "KEBIAO_ALLOW_UNAUTHENTICATED", False),
            teams=TeamsSettings(
                # A stray space in a deployment form must not count as a credential.
                app_id=app_id,
                app_password=(get("MICROSOFT_APP_PASSWORD") or "").strip(),
                app_type=(get("MICROSOFT_APP_TYPE") or "").strip() or "MultiTenant",
                app_tenant_id=(get("MICROSOFT_APP_TENANT_ID") or "").strip(),
                link_secret=_link_secret(get),
            ),
            wecom=WeComSettings(
                corp_id=get("WECOM_CORP_ID") or "",
                token=get("WECOM_TOKEN") or "",
                encoding_aes_key=get("WECOM_ENCODING_AES_KEY") or "",
                secret=get("WECOM_SECRET") or "",
                agent_id=get("WECOM_AGENT_ID") or "",
                api_base=(get("WECOM_API_BASE") or DEFAULT_WECOM_API_BASE).rstrip("/"),
            ),
            alerts=_alert_settings(get),
            webhook_env={k: v for k, v in values.items() if k.startswith("KEBIAO_WEBHOOK_") and v.strip()},
            console=_console_settings(get),
            learning=_learning_settings(get),
            crm=_crm_settings(get),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations that are unsafe or cannot work."""
        _check_timezone(self.timezone)
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(
                f"KEBIAO_ENV={self.environment!r} is not known: use {', '.join(ENVIRONMENTS)} "
                "(production refuses to serve without Bot Framework credentials)"
            )
        if _app_type(self.teams) is None:
            raise ConfigError(
                f"MICROSOFT_APP_TYPE={self.teams.app_type!r} is not supported: use MultiTenant, SingleTenant or "
                "UserAssignedMSI"
            )
        if self.tag_hard_cap < 1:
            raise ConfigError("KEBIAO_TAG_HARD_CAP must be a positive integer")
        if self.wecom.encoding_aes_key and len(self.wecom.encoding_aes_key) != 43:
            raise ConfigError("WECOM_ENCODING_AES_KEY must be the 43-character EncodingAESKey from the WeCom console")
        _check_crm(self.crm)


def _check_crm(crm: CrmSettings) -> None:
    """KEBIAO_CRM names a known connector and that connector's settings are complete."""
    if crm.kind and crm.kind not in CRM_KINDS:
        raise ConfigError(f"KEBIAO_CRM={crm.kind!r} is not supported: use {' or '.join(CRM_KINDS)}, or unset it")
    if crm.missing():
        raise ConfigError(f"KEBIAO_CRM={crm.kind} needs {', '.join(crm.missing())}")
    if crm.every_minutes < 1 or crm.page_size < 0:
        raise ConfigError("KEBIAO_CRM_SYNC_MINUTES must be at least 1 and KEBIAO_CRM_PAGE_SIZE not negative")


def masked_url(url: str) -> str:
    """A database URL fit for a log line: the password (between `user:` and `@`) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, location = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:***@{location}"


def start_up_line(settings: Settings, taxonomy_version: int | None) -> str:
    """The one line `kebiao serve` logs when it is ready: where, which database and taxonomy, what is on."""
    channels = ["teams"]
    if settings.wecom.enabled:
        channels.append("wecom")
    if settings.admin_token:
        channels.append("admin API")
    version = f"version {taxonomy_version}" if taxonomy_version is not None else "none"
    parts = [
        f"listening on http://{settings.host}:{settings.port}",
        f"database {masked_url(settings.database_url)}",
        f"taxonomy {version}",
        f"channels: {', '.join(channels)}",
        f"scheduler {'on' if settings.scheduler_enabled else 'off'}",
        f"time zone {settings.timezone}",
    ]
    if not settings.teams.app_id.strip():
        parts.append("emulator mode: no authentication (set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD)")
    return "kebiao serve: " + "; ".join(parts)


# MICROSOFT_APP_TYPE values (any case) and the Bot Framework SDK spelling.
APP_TYPES = {"multitenant": "MultiTenant", "singletenant": "SingleTenant", "userassignedmsi": "UserAssignedMSI"}


def _app_type(teams: TeamsSettings) -> str | None:
    return APP_TYPES.get(teams.app_type.strip().lower())


def check_serve(settings: Settings) -> None:
    """What serving needs beyond `check`: production has authentication on, and the credentials are whole.

    Checked by `kebiao serve` (and `create_app`), not by every verb: read-only verbs such as
    `customers show` run in production without Bot Framework credentials.
    """
    if settings.production and not settings.teams.app_id.strip():
        raise ConfigError(
            "KEBIAO_ENV=production but MICROSOFT_APP_ID is empty: Bot Framework authentication would be "
            "off. Set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD, or unset KEBIAO_ENV for local use."
        )
    check_bot_credentials(settings.teams)
    check_listen(settings)


def check_bot_credentials(teams: TeamsSettings) -> None:
    """Credentials the Bot Framework would only reject at start-up or at the first request.

    Checked by `kebiao serve`, not by every verb: building the Teams package needs the app id but
    not its secret.
    """
    app_type = _app_type(teams)
    if app_type is None or not teams.app_id.strip():
        return  # local/emulator mode (refused in production by check_serve)
    if app_type in ("SingleTenant", "UserAssignedMSI") and not teams.app_tenant_id.strip():
        raise ConfigError(
            f"MICROSOFT_APP_TYPE={app_type} needs MICROSOFT_APP_TENANT_ID (the bot's Entra tenant id)"
        )
    if app_type != "UserAssignedMSI" and not teams.app_password.strip():
        raise ConfigError(
            f"MICROSOFT_APP_ID is set but MICROSOFT_APP_PASSWORD is empty ({app_type} bot): set the client "
            "secret from the bot's Entra app registration, or unset MICROSOFT_APP_ID for local use"
        )


def check_listen(settings: Settings) -> None:
    """Emulator mode (no MICROSOFT_APP_ID) authenticates nobody: refuse a non-loopback HOST unless allowed.

    Checked by `kebiao serve`, the only verb that listens.
    """
    if settings.teams.app_id.strip() or settings.allow_unauthenticated or is_loopback_host(settings.host):
        return
    raise ConfigError(
        f"HOST={settings.host} but MICROSOFT_APP_ID is empty: in emulator mode /api/messages answers anyone "
        "without authentication, so it only listens on a loopback address. Set HOST=127.0.0.1 (or leave HOST "
        "unset) for local use, set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD to serve Teams, or set "
        "KEBIAO_ALLOW_UNAUTHENTICATED=1 if this address is reachable only by you (see docs/security.md)"
    )


def _alert_settings(get: Callable[[str], str | None]) -> AlertSettings:
    """The KEBIAO_ALERT_* / KEBIAO_CHURN_* / KEBIAO_QUIET_HOURS slice, checked here so bad values stop startup."""
    alert_time = _clock(get("KEBIAO_ALERT_TIME"), "KEBIAO_ALERT_TIME", "09:00")
    churn_time = _clock(get("KEBIAO_CHURN_TIME"), "KEBIAO_CHURN_TIME", "09:30")
    quiet = (get("KEBIAO_QUIET_HOURS") or "22:00-08:00").strip()
    if quiet.lower() != "off":
        start, sep, end = quiet.partition("-")
        if not sep:
            raise ConfigError(f"KEBIAO_QUIET_HOURS={quiet!r}: use HH:MM-HH:MM (e.g. 22:00-08:00) or off")
        _clock(start, "KEBIAO_QUIET_HOURS", "")
        _clock(end, "KEBIAO_QUIET_HOURS", "")
    threshold = _float(get("KEBIAO_CHURN_THRESHOLD"), "KEBIAO_CHURN_THRESHOLD", 0.6)
    if not 0 < threshold <= 1:
        raise ConfigError(f"KEBIAO_CHURN_THRESHOLD={threshold} must be in (0, 1]")
    settings = AlertSettings(
        alert_time=alert_time,
        churn_time=churn_time,
        expire_every_minutes=_int(get("KEBIAO_EXPIRE_EVERY_MINUTES"), "KEBIAO_EXPIRE_EVERY_MINUTES", 15),
        outbox_every_seconds=_int(get("KEBIAO_OUTBOX_EVERY_SECONDS"), "KEBIAO_OUTBOX_EVERY_SECONDS", 30),
        quiet_hours=quiet,
        expiry_warn_days=_int(get("KEBIAO_EXPIRY_WARN_DAYS"), "KEBIAO_EXPIRY_WARN_DAYS", 7),
        expiry_warn_tags=tuple(
            (name, int(value)) for name, value in _pairs(get("KEBIAO_EXPIRY_WARN_TAGS"), "KEBIAO_EXPIRY_WARN_TAGS", int)
        ),
        churn_threshold=threshold,
        churn_weights=tuple(
            (name, float(value)) for name, value in _pairs(get("KEBIAO_CHURN_WEIGHTS"), "KEBIAO_CHURN_WEIGHTS", float)
        ),
        churn_silence_days=_int(get("KEBIAO_CHURN_SILENCE_DAYS"), "KEBIAO_CHURN_SILENCE_DAYS", 30),
        churn_contract_days=_int(get("KEBIAO_CHURN_CONTRACT_DAYS"), "KEBIAO_CHURN_CONTRACT_DAYS", 30),
        churn_repeat_days=_int(get("KEBIAO_CHURN_REPEAT_DAYS"), "KEBIAO_CHURN_REPEAT_DAYS", 7),
        run_at_start=_switch(get("KEBIAO_ALERTS_RUN_AT_START"), "KEBIAO_ALERTS_RUN_AT_START", False),
        suggestion_expiry_days=_int(get("KEBIAO_SUGGESTION_EXPIRY_DAYS"), "KEBIAO_SUGGESTION_EXPIRY_DAYS", 14),
        rules_time=_clock(get("KEBIAO_RULES_TIME"), "KEBIAO_RULES_TIME", "09:40"),
        rule_tags_every_seconds=_int(get("KEBIAO_RULE_TAGS_EVERY_SECONDS"), "KEBIAO_RULE_TAGS_EVERY_SECONDS", 60),
    )
    checked = ("expire_every_minutes", "outbox_every_seconds", "expiry_warn_days", "churn_repeat_days")
    for name in (*checked, "suggestion_expiry_days"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"alert setting {name} must be at least 1")
    return settings


def _link_secret(get: Callable[[str], str | None]) -> str:
    """KEBIAO_LINK_SECRET, else a key derived (one-way) from KEBIAO_CONSOLE_SECRET or MICROSOFT_APP_PASSWORD."""
    own = (get("KEBIAO_LINK_SECRET") or "").strip()
    if own:
        if len(own) < 32:
            raise ConfigError("KEBIAO_LINK_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return own
    for name in ("KEBIAO_CONSOLE_SECRET", "MICROSOFT_APP_PASSWORD"):
        base = (get(name) or "").strip()
        if base:
            return hmac.new(base.encode("utf-8"), b"kebiao channel-link offers", hashlib.sha256).hexdigest()
    return ""


def _console_settings(get: Callable[[str], str | None]) -> ConsoleSettings:
    """The KEBIAO_CONSOLE_* / KEBIAO_PUBLIC_HOST slice."""
    secret = (get("KEBIAO_CONSOLE_SECRET") or "").strip()
    if secret and len(secret) < 32:
        raise ConfigError("KEBIAO_CONSOLE_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    host = (get("KEBIAO_PUBLIC_HOST") or "").strip().lower()
    if host and ("/" in host or " " in host):
        raise ConfigError(f"KEBIAO_PUBLIC_HOST={host!r} must be a bare host name like kebiao.contoso.cn")
    tenants = tuple(
        t.strip().lower()
        for t in (get("KEBIAO_CONSOLE_AAD_TENANTS") or get("MICROSOFT_APP_TENANT_ID") or "").split(",")
        if t.strip()
    )
    return ConsoleSettings(
        secret=secret,
        public_host=host,
        aad_audience=(get("KEBIAO_CONSOLE_AAD_AUDIENCE") or "").strip(),
        aad_jwks_url=(get("KEBIAO_CONSOLE_AAD_JWKS_URL") or DEFAULT_AAD_JWKS_URL).strip(),
        aad_tenants=tenants,
        wecom_login_url=(get("KEBIAO_CONSOLE_WECOM_LOGIN_URL") or DEFAULT_WECOM_LOGIN_URL).strip(),
        session_hours=_int(get("KEBIAO_CONSOLE_SESSION_HOURS"), "KEBIAO_CONSOLE_SESSION_HOURS", 8),
    )


def _learning_settings(get: Callable[[str], str | None]) -> LearningSettings:
    """The KEBIAO_LEARN_* slice, checked here so bad values stop startup."""
    settings = LearningSettings(
        retention_days=_int(get("KEBIAO_LEARN_RETENTION_DAYS"), "KEBIAO_LEARN_RETENTION_DAYS", 365),
        min_examples=_int(get("KEBIAO_LEARN_MIN_EXAMPLES"), "KEBIAO_LEARN_MIN_EXAMPLES", 30),
        min_positives=_int(get("KEBIAO_LEARN_MIN_POSITIVES"), "KEBIAO_LEARN_MIN_POSITIVES", 10),
        min_precision=_float(get("KEBIAO_LEARN_MIN_PRECISION"), "KEBIAO_LEARN_MIN_PRECISION", 0.8),
        threshold=_float(get("KEBIAO_LEARN_THRESHOLD"), "KEBIAO_LEARN_THRESHOLD", 0.5),
        train_after=_int(get("KEBIAO_LEARN_TRAIN_AFTER"), "KEBIAO_LEARN_TRAIN_AFTER", 50),
        train_every_minutes=_int(get("KEBIAO_LEARN_TRAIN_EVERY_MINUTES"), "KEBIAO_LEARN_TRAIN_EVERY_MINUTES", 30),
        poll_seconds=_float(get("KEBIAO_LEARN_POLL_SECONDS"), "KEBIAO_LEARN_POLL_SECONDS", 10.0),
    )
    for name in ("retention_days", "min_examples", "min_positives", "train_after", "train_every_minutes"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"KEBIAO_LEARN_{name.upper()} must be at least 1")
    for name in ("min_precision", "threshold"):
        if not 0 < getattr(settings, name) < 1:
            raise ConfigError(f"KEBIAO_LEARN_{name.upper()} must be between 0 and 1 (exclusive)")
    if settings.poll_seconds <= 0:
        raise ConfigError("KEBIAO_LEARN_POLL_SECONDS must be positive")
    return settings


def _clock(raw: str | None, name: str, default: str) -> str:
    value = (raw or default).strip()
    hour, sep, minute = value.partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise ConfigError(f"{name}={value!r} is not a time of day; use HH:MM, e.g. 09:00")
    return f"{int(hour):02d}:{int(minute):02d}"


def _float(raw: str | None, name: str, default: float) -> float:
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _pairs(raw: str | None, name: str, kind: Callable[[str], object]) -> list[tuple[str, str]]:
    """'a=1,b=2' → [('a', '1'), ('b', '2')], each value checked with `kind`."""
    out: list[tuple[str, str]] = []
    for part in (raw or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        try:
            if not (sep and key.strip()):
                raise ValueError
            kind(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not NAME=VALUE (e.g. silence=0.2)") from None
        out.append((key.strip(), value.strip()))
    return out


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; '#' comments and blank lines are skipped, quotes are stripped."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _switch(raw: str | None, name: str, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"on", "true", "1", "yes"}:
        return True
    if value in {"off", "false", "0", "no"}:
        return False
    raise ConfigError(f"{name}={raw!r}: use on or off")


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"KEBIAO_TIMEZONE={name!r} is not a known IANA time zone (e.g. Asia/Shanghai)") from None
