"""Bot Framework authentication built from the Teams credentials slice of the settings.

Inbound tokens (channel -> bot) and outbound credentials (bot -> channel) always go through the SDK's
*parameterised* authentication with the public-cloud endpoints as defaults, so the code path that tests
exercise against a local OpenID/JWKS server is the same one production runs against
login.botframework.com; only the URLs differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from botbuilder.integration.aiohttp import (
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import CallerIdConstants
from botframework.connector.auth import (
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ServiceClientCredentialsFactory,
)

APP_TYPES = {
    "multitenant": "MultiTenant",
    "singletenant": "SingleTenant",
    "userassignedmsi": "UserAssignedMSI",
}


class TeamsCredentials(Protocol):
    """What authentication needs from settings (config.TeamsSettings satisfies it)."""

    @property
    def app_id(self) -> str: ...

    @property
    def app_password(self) -> str: ...

    @property
    def app_type(self) -> str: ...

    @property
    def app_tenant_id(self) -> str: ...


@dataclass(frozen=True)
class BotFrameworkEndpoints:
    """Where tokens are checked and fetched; defaults are the Azure public cloud."""

    openid_metadata_url: str = AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
    token_issuer: str = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
    emulator_openid_metadata_url: str = AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
    login_url: str = AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL
    oauth_scope: str = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
    oauth_url: str = AuthenticationConstants.OAUTH_URL
    caller_id: str = CallerIdConstants.public_azure_channel.value


class _SdkConfiguration:
    """The attribute bag the SDK's Configuration* classes read; repr never shows the password."""

    def __init__(self, credentials: TeamsCredentials, endpoints: BotFrameworkEndpoints) -> None:
        self.APP_ID = credentials.app_id
        self.APP_PASSWORD = credentials.app_password
        self.APP_TYPE = normalise_app_type(credentials.app_type)
        self.APP_TENANTID = credentials.app_tenant_id
        self.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = endpoints.openid_metadata_url
        self.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = endpoints.token_issuer
        self.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = endpoints.emulator_openid_metadata_url
        self.TO_CHANNEL_FROM_BOT_LOGIN_URL = endpoints.login_url
        self.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = endpoints.oauth_scope
        self.OAUTH_URL = endpoints.oauth_url
        self.CALLER_ID = endpoints.caller_id
        self.VALIDATE_AUTHORITY = True

    def __repr__(self) -> str:
        return f"_SdkConfiguration(APP_ID={self.APP_ID!r}, APP_TYPE={self.APP_TYPE!r}, APP_PASSWORD=***)"


def normalise_app_type(raw: str) -> str:
    """Map MICROSOFT_APP_TYPE (any case) to the SDK spelling; unknown values are refused."""
    value = (raw or "MultiTenant").strip().lower()
    if value not in APP_TYPES:
        raise ValueError(
            f"MICROSOFT_APP_TYPE={raw!r} is not supported: use MultiTenant, SingleTenant or UserAssignedMSI"
        )
    return APP_TYPES[value]


def check_credentials(credentials: TeamsCredentials) -> None:
    """Refuse credential combinations the SDK would only reject at the first request."""
    app_type = normalise_app_type(credentials.app_type)
    if not credentials.app_id:
        return  # local/emulator mode; config.check_serve refuses it in production
    if app_type == "SingleTenant" and not credentials.app_tenant_id:
        raise ValueError(
            "MICROSOFT_APP_TYPE=SingleTenant needs MICROSOFT_APP_TENANT_ID (the bot's Entra tenant)"
        )
    if app_type == "UserAssignedMSI" and not credentials.app_tenant_id:
        raise ValueError("MICROSOFT_APP_TYPE=UserAssignedMSI needs MICROSOFT_APP_TENANT_ID")
    if app_type != "UserAssignedMSI" and not credentials.app_password:
        raise ValueError(f"MICROSOFT_APP_ID is set but MICROSOFT_APP_PASSWORD is empty ({app_type} bot)")


def build_authentication(
    credentials: TeamsCredentials,
    endpoints: BotFrameworkEndpoints | None = None,
    credentials_factory: ServiceClientCredentialsFactory | None = None,
) -> BotFrameworkAuthentication:
    """ConfigurationBotFrameworkAuthentication for `credentials`; an empty app id disables auth."""
    check_credentials(credentials)
    configuration = _SdkConfiguration(credentials, endpoints or BotFrameworkEndpoints())
    factory = credentials_factory or ConfigurationServiceClientCredentialFactory(configuration)
    return ConfigurationBotFrameworkAuthentication(configuration, credentials_factory=factory)
