"""Settings are read once from the environment and refuse unsafe combinations."""

import pytest

from config import (
    ConfigError,
    Settings,
    check_bot_credentials,
    check_listen,
    check_serve,
    masked_url,
    start_up_line,
)


def test_defaults_match_design() -> None:
    s = Settings.from_env({}, dotenv=None)
    assert s.database_url == "sqlite+aiosqlite:///./data/kebiao.db"
    assert (s.host, s.port) == ("127.0.0.1", 3978)  # no MICROSOFT_APP_ID: emulator mode listens on loopback
    assert s.timezone == "Asia/Shanghai"
    assert s.scheduler_enabled is True
    assert not s.wecom.enabled


def test_production_without_app_id_is_refused_for_serving_only() -> None:
    settings = Settings.from_env({"KEBIAO_ENV": "production"}, dotenv=None)  # read-only verbs may run
    assert settings.production
    with pytest.raises(ConfigError, match="MICROSOFT_APP_ID is empty"):
        check_serve(settings)


@pytest.mark.parametrize("value", ["prod", "staging", "Production!"])
def test_unknown_environment_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"KEBIAO_ENV=.* is not known: use development, production, test"):
        Settings.from_env({"KEBIAO_ENV": value}, dotenv=None)


@pytest.mark.parametrize("value", ["development", "production", "test", " Production "])
def test_known_environments_are_accepted(value: str) -> None:
    assert Settings.from_env({"KEBIAO_ENV": value}, dotenv=None).environment == value.strip().lower()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+asyncpg://kebiao:s3cr%40t@db.internal:5432/kebiao",
            "postgresql+asyncpg://kebiao:***@db.internal:5432/kebiao",
        ),
        ("postgresql+asyncpg://kebiao@db/kebiao", "postgresql+asyncpg://kebiao@db/kebiao"),
        ("sqlite+aiosqlite:///./data/kebiao.db", "sqlite+aiosqlite:///./data/kebiao.db"),
    ],
)
def test_database_password_is_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_start_up_line_names_address_database_taxonomy_channels_and_emulator_mode() -> None:
    settings = Settings.from_env(
        {
            "PORT": "4000",
            "KEBIAO_DATABASE_URL": "postgresql+asyncpg://kebiao:hunter2@db/kebiao",
            "KEBIAO_ADMIN_TOKEN": "t",
        },
        dotenv=None,
    )
    line = start_up_line(settings, 7)
    assert "listening on http://127.0.0.1:4000" in line  # no app id: loopback unless HOST says otherwise
    assert "database postgresql+asyncpg://kebiao:***@db/kebiao" in line and "hunter2" not in line
    assert "taxonomy version 7" in line
    assert "channels: teams, admin API" in line
    assert "emulator mode: no authentication" in line
    secured = Settings.from_env({"MICROSOFT_APP_ID": "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}, dotenv=None)
    assert "emulator mode" not in start_up_line(secured, 1)
    assert "channels: teams;" in start_up_line(secured, 1)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"KEBIAO_SCHEDULER": "maybe"}, "KEBIAO_SCHEDULER"),
        ({"KEBIAO_TIMEZONE": "Mars/Base"}, "KEBIAO_TIMEZONE"),
        ({"WECOM_ENCODING_AES_KEY": "short"}, "WECOM_ENCODING_AES_KEY"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env, dotenv=None)


def test_dotenv_is_read_and_environment_wins(tmp_path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nPORT=4000\nexport HOST='127.0.0.1'\nKEBIAO_SCHEDULER=off\n", encoding="utf-8")
    s = Settings.from_env({"PORT": "5000"}, dotenv=dotenv)
    assert (s.host, s.port, s.scheduler_enabled) == ("127.0.0.1", 5000, False)


def test_secrets_are_not_in_repr() -> None:
    s = Settings.from_env({"MICROSOFT_APP_PASSWORD": "hunter2", "KEBIAO_ADMIN_TOKEN": "tok"}, dotenv=None)
    assert "hunter2" not in repr(s)
    assert "tok'" not in repr(s)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MICROSOFT_APP_ID": "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}, "MICROSOFT_APP_PASSWORD is empty"),
        (
            {"MICROSOFT_APP_ID": "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "MICROSOFT_APP_PASSWORD": "   "},
            "MICROSOFT_APP_PASSWORD is empty",
        ),
        (
            {"MICROSOFT_APP_ID": "id", "MICROSOFT_APP_PASSWORD": "pw", "MICROSOFT_APP_TYPE": "singletenant"},
            "needs MICROSOFT_APP_TENANT_ID",
        ),
        ({"MICROSOFT_APP_TYPE": "Federated"}, "MICROSOFT_APP_TYPE='Federated' is not supported"),
        ({"KEBIAO_ENV": "production", "MICROSOFT_APP_ID": " "}, "MICROSOFT_APP_ID is empty"),
    ],
)
def test_teams_credential_rules_are_configuration_errors(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_serve(Settings.from_env(env, dotenv=None))


def test_an_app_id_without_its_secret_is_enough_to_build_the_package_but_not_to_serve() -> None:
    settings = Settings.from_env({"MICROSOFT_APP_ID": "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}, dotenv=None)
    assert settings.teams.app_id  # from_env accepts it: `kebiao manifest build` needs only the id
    with pytest.raises(ConfigError, match="MICROSOFT_APP_PASSWORD is empty"):
        check_bot_credentials(settings.teams)


def test_teams_credentials_are_stripped_and_valid_combinations_pass() -> None:
    s = Settings.from_env(
        {
            "MICROSOFT_APP_ID": " app-id\n",
            "MICROSOFT_APP_PASSWORD": "secret ",
            "MICROSOFT_APP_TYPE": "SingleTenant",
            "MICROSOFT_APP_TENANT_ID": " tenant ",
        },
        dotenv=None,
    )
    assert (s.teams.app_id, s.teams.app_password, s.teams.app_tenant_id) == ("app-id", "secret", "tenant")
    msi = {"MICROSOFT_APP_ID": "id", "MICROSOFT_APP_TYPE": "UserAssignedMSI", "MICROSOFT_APP_TENANT_ID": "t"}
    assert Settings.from_env(msi, dotenv=None).teams.app_password == ""


def test_emulator_mode_listens_on_loopback_and_credentials_on_every_address() -> None:
    assert Settings.from_env({}, dotenv=None).host == "127.0.0.1"
    with_bot = Settings.from_env({"MICROSOFT_APP_ID": "id", "MICROSOFT_APP_PASSWORD": "pw"}, dotenv=None)
    assert with_bot.host == "0.0.0.0"
    assert Settings.from_env({"HOST": "::1"}, dotenv=None).host == "::1"  # an explicit HOST always wins


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_emulator_mode_may_listen_on_loopback(host: str) -> None:
    check_listen(Settings.from_env({"HOST": host}, dotenv=None))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "kebiao.example.com", "127.0.0.1.nip.io"])
def test_emulator_mode_on_a_reachable_address_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(ConfigError, match="KEBIAO_ALLOW_UNAUTHENTICATED=1") as refused:
        check_listen(Settings.from_env({"HOST": host}, dotenv=None))
    assert f"HOST={host}" in str(refused.value) and "MICROSOFT_APP_ID" in str(refused.value)
    check_listen(Settings.from_env({"HOST": host, "KEBIAO_ALLOW_UNAUTHENTICATED": "1"}, dotenv=None))
    bot = {"MICROSOFT_APP_ID": "id", "MICROSOFT_APP_PASSWORD": "pw"}
    check_listen(Settings.from_env({"HOST": host, **bot}, dotenv=None))
    with pytest.raises(ConfigError, match="KEBIAO_ALLOW_UNAUTHENTICATED"):
        Settings.from_env({"HOST": host, "KEBIAO_ALLOW_UNAUTHENTICATED": "perhaps"}, dotenv=None)


def test_serve_refuses_emulator_mode_on_a_reachable_address_before_listening(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    for name in ("MICROSOFT_APP_ID", "MICROSOFT_APP_PASSWORD", "KEBIAO_ALLOW_UNAUTHENTICATED", "KEBIAO_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "HOST=0.0.0.0" in err and "KEBIAO_ALLOW_UNAUTHENTICATED=1" in err and "docs/security.md" in err


def test_crm_attributes_default_per_connector_and_bad_entries_are_named() -> None:
    from core.crm.port import AttributeField

    base = {"KEBIAO_CRM": ""}
    settings = Settings.from_env(base, dotenv=None)
    assert AttributeField("role", "contact", "accountrolecode") in settings.crm.dynamics_attributes
    assert AttributeField("region", "Contacts", "Mailing_State") in settings.crm.zoho_attributes
    custom = Settings.from_env(
        {**base, "KEBIAO_CRM_DYNAMICS_ATTRIBUTES": "行业=account.industrycode, 区域=kb_area"}, dotenv=None
    )
    assert custom.crm.dynamics_attributes == (
        AttributeField("行业", "account", "industrycode"),
        AttributeField("区域", "", "kb_area"),
    )
    assert Settings.from_env({**base, "KEBIAO_CRM_ZOHO_ATTRIBUTES": "none"}, dotenv=None).crm.zoho_attributes == ()
    with pytest.raises(ConfigError, match=r"KEBIAO_CRM_DYNAMICS_ATTRIBUTES: 'role=lead\.jobtitle' is not"):
        Settings.from_env({**base, "KEBIAO_CRM_DYNAMICS_ATTRIBUTES": "role=lead.jobtitle"}, dotenv=None)


def test_the_link_secret_is_its_own_or_derived_the_same_on_every_replica() -> None:
    own = Settings.from_env({"KEBIAO_LINK_SECRET": "l" * 32}, dotenv=None).teams.link_secret
    assert own == "l" * 32
    console = {"KEBIAO_CONSOLE_SECRET": "c" * 32}
    derived = Settings.from_env(console, dotenv=None).teams.link_secret
    assert derived == Settings.from_env(console, dotenv=None).teams.link_secret  # a second replica
    assert len(derived) == 64 and "c" * 32 not in derived
    other = Settings.from_env({"KEBIAO_CONSOLE_SECRET": "d" * 32}, dotenv=None).teams.link_secret
    assert other != derived
    assert Settings.from_env({}, dotenv=None).teams.link_secret == ""
    assert "link_secret" not in repr(Settings.from_env(console, dotenv=None))
    with pytest.raises(ConfigError, match="KEBIAO_LINK_SECRET must be at least 32 characters"):
        Settings.from_env({"KEBIAO_LINK_SECRET": "short"}, dotenv=None)
