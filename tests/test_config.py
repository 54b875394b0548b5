"""Settings are read once from the environment and refuse unsafe combinations."""

import pytest

from config import ConfigError, Settings


def test_defaults_match_design() -> None:
    s = Settings.from_env({}, dotenv=None)
    assert s.database_url == "sqlite+aiosqlite:///./data/kebiao.db"
    assert (s.host, s.port) == ("0.0.0.0", 3978)
    assert s.timezone == "Asia/Shanghai"
    assert s.scheduler_enabled is True
    assert not s.wecom.enabled


def test_production_without_app_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="MICROSOFT_APP_ID"):
        Settings.from_env({"KEBIAO_ENV": "production"}, dotenv=None)


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
