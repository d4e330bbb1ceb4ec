"""Settings resolution: arguments, then environment, then the owner-only config file."""

from __future__ import annotations

import os

import pytest

from cocalc_magics.api import ConfigurationError, Connection, resolve_settings
from cocalc_magics.api.settings import DEFAULT_HOST, default_config_path, mask_key

KEY_ARG = "sk-ARGUMENTKEY-11112222"
KEY_ENV = "sk-ENVKEY-333344445555"
KEY_FILE = "sk-FILEKEY-66667777888"
PROJECT_A = "11111111-2222-3333-4444-555555555555"
PROJECT_B = "22222222-3333-4444-5555-666666666666"
PROJECT_C = "33333333-4444-5555-6666-777777777777"


def write_config(path, text: str, mode: int = 0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


@pytest.fixture
def config_file(tmp_path):
    return write_config(
        tmp_path / "config.toml",
        f'host = "https://file.example/base/"\n'
        f'api_key = "{KEY_FILE}"\n'
        f'project_id = "{PROJECT_C}"\n',
    )


def test_arguments_win_over_everything(config_file):
    environ = {
        "COCALC_API_KEY": KEY_ENV,
        "COCALC_HOST": "https://env.example",
        "COCALC_PROJECT_ID": PROJECT_B,
    }
    settings = resolve_settings(
        "https://arg.example",
        KEY_ARG,
        PROJECT_A,
        config_path=config_file,
        environ=environ,
    )
    assert settings.host == "https://arg.example"
    assert settings.api_key == KEY_ARG
    assert settings.project_id == PROJECT_A
    assert set(settings.sources.values()) == {"argument"}


def test_environment_wins_over_config_file(config_file):
    environ = {"COCALC_API_KEY": KEY_ENV, "COCALC_HOST": "https://env.example"}
    settings = resolve_settings(config_path=config_file, environ=environ)
    assert settings.api_key == KEY_ENV
    assert settings.host == "https://env.example"
    assert settings.project_id == PROJECT_C
    assert settings.sources["api_key"] == "environment variable COCALC_API_KEY"
    assert settings.sources["host"] == "environment variable COCALC_HOST"
    assert settings.sources["project_id"] == f"config file {config_file}"


def test_config_file_fills_missing_values(config_file):
    settings = resolve_settings(config_path=config_file, environ={})
    assert settings.host == "https://file.example/base"
    assert settings.api_key == KEY_FILE
    assert settings.project_id == PROJECT_C
    assert settings.missing() == []


def test_default_host_when_nothing_given(tmp_path):
    settings = resolve_settings(config_path=tmp_path / "absent.toml", environ={})
    assert settings.host == DEFAULT_HOST == "https://cocalc.com"
    assert settings.sources["host"] == "default"
    assert settings.api_key is None
    assert settings.missing() == ["api_key", "project_id"]


def test_empty_environment_values_are_ignored(config_file):
    environ = {"COCALC_API_KEY": "  ", "COCALC_HOST": ""}
    settings = resolve_settings(config_path=config_file, environ=environ)
    assert settings.api_key == KEY_FILE
    assert settings.host == "https://file.example/base"


def test_default_config_path_is_used(monkeypatch, tmp_path):
    path = default_config_path()
    assert str(path).startswith(str(tmp_path / "config-home"))
    write_config(path, f'api_key = "{KEY_FILE}"\n')
    settings = resolve_settings(environ={})
    assert settings.api_key == KEY_FILE
    assert settings.sources["api_key"] == f"config file {path}"


def test_process_environment_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("COCALC_API_KEY", KEY_ENV)
    monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_B.upper())
    settings = resolve_settings(config_path=tmp_path / "absent.toml")
    assert settings.api_key == KEY_ENV
    assert settings.project_id == PROJECT_B


@pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX only")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_config_file_readable_by_others_is_rejected(tmp_path, mode):
    path = write_config(tmp_path / "config.toml", f'api_key = "{KEY_FILE}"\n', mode)
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(config_path=path, environ={})
    assert str(path) in caught.value.message
    assert "other users" in caught.value.message
    assert f"chmod 600 {path}" in caught.value.hint
    assert KEY_FILE not in str(caught.value)
    assert KEY_FILE not in caught.value.hint


@pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX only")
def test_config_file_not_read_when_all_given(tmp_path):
    path = write_config(tmp_path / "config.toml", f'api_key = "{KEY_FILE}"\n', 0o644)
    settings = resolve_settings(
        "https://arg.example", KEY_ARG, PROJECT_A, config_path=path, environ={}
    )
    assert settings.api_key == KEY_ARG


def test_config_file_with_invalid_toml(tmp_path):
    path = write_config(tmp_path / "config.toml", "api_key = sk-unquoted\n")
    with pytest.raises(ConfigurationError, match="not valid TOML") as caught:
        resolve_settings(config_path=path, environ={})
    assert "quoted value" in caught.value.hint
    assert "chmod" not in caught.value.hint


def test_config_file_unknown_key_warns(tmp_path):
    path = write_config(
        tmp_path / "config.toml", 'projectid = "x"\nhost = "https://cocalc.com"\n'
    )
    with pytest.warns(UserWarning, match="unknown setting 'projectid'") as caught:
        settings = resolve_settings(config_path=path, environ={})
    assert "did you mean 'project_id'?" in str(caught[0].message)
    assert settings.project_id is None


def test_config_file_with_non_string_value(tmp_path):
    path = write_config(tmp_path / "config.toml", "project_id = 12\n")
    with pytest.raises(ConfigurationError, match="non-string value for 'project_id'"):
        resolve_settings(config_path=path, environ={})


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("cocalc.com", "must start with https://"),
        ("ftp://cocalc.com", "must start with https://"),
        ("https://", "no host name"),
        ("https://cocalc.com/?a=1", "query or fragment"),
    ],
)
def test_invalid_host_is_rejected(host, problem):
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(host, environ={}, config_path="/nonexistent/config.toml")
    assert problem in caught.value.message
    assert "from argument" in caught.value.message


def test_host_with_credentials_is_rejected_without_echo():
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(
            "https://user:sk-SECRET-in-url@cocalc.com",
            environ={},
            config_path="/nonexistent/config.toml",
        )
    assert "sk-SECRET-in-url" not in str(caught.value)
    assert "user name or password" in caught.value.message


def test_invalid_project_id_names_its_source():
    environ = {"COCALC_PROJECT_ID": "not-a-uuid"}
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(environ=environ, config_path="/nonexistent/config.toml")
    assert "environment variable COCALC_PROJECT_ID" in caught.value.message
    assert "'not-a-uuid'" in caught.value.message


@pytest.mark.parametrize(
    "key", ["sk-has space-1234", "sk-naïve-12345678", "sk-tab\tkey"]
)
def test_invalid_api_key_is_rejected_without_echo(key):
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(api_key=key, environ={}, config_path="/nonexistent/x.toml")
    assert key not in str(caught.value)
    assert "invalid API key from argument" in caught.value.message


def test_host_keeps_base_path_and_drops_trailing_slash():
    settings = resolve_settings(
        "https://example.org/cocalc/", environ={}, config_path="/nonexistent/x.toml"
    )
    assert settings.host == "https://example.org/cocalc"


def test_describe_names_sources_and_masks_key(config_file):
    settings = resolve_settings(
        api_key="sk-CANARY-7f3a9c0e5b1d", config_path=config_file, environ={}
    )
    lines = settings.describe()
    text = "\n".join(lines)
    assert "sk-CANARY-7f3a9c0e5b1d" not in text
    assert "API key: sk-…5b1d (from argument)" in lines
    assert f"host: https://file.example/base (from config file {config_file})" in lines


def test_describe_says_how_to_set_missing_values(tmp_path):
    path = tmp_path / "absent.toml"
    settings = resolve_settings(config_path=path, environ={})
    lines = settings.describe()
    assert f"API key: not set; set COCALC_API_KEY or add api_key to {path}" in lines
    assert any(line.startswith("project id: not set") for line in lines)


def test_repr_and_str_mask_the_key():
    settings = resolve_settings(
        api_key="sk-CANARY-7f3a9c0e5b1d", environ={}, config_path="/nonexistent/x.toml"
    )
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert "sk-CANARY-7f3a9c0e5b1d" not in text
        assert "sk-…5b1d" in text


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("sk-CANARY-7f3a9c0e5b1d", "sk-…5b1d"),
        ("sk_legacylegacylegacy9", "sk_…acy9"),
        ("sk-short", "sk-…"),
        ("abcdefghijklmnopqrstu", "…rstu"),
        (None, None),
    ],
)
def test_mask_key(key, masked):
    assert mask_key(key) == masked


def test_connection_overrides_settings(config_file):
    settings = resolve_settings(config_path=config_file, environ={})
    conn = Connection(settings, project_id=PROJECT_A)
    assert conn.project_id == PROJECT_A
    assert conn.settings.sources["project_id"] == "argument"
    assert conn.settings.api_key == KEY_FILE
    assert conn.host == "https://file.example/base"
    conn.close()


def test_missing_key_sends_nothing(fake, tmp_path):
    conn = Connection(host=fake.url, project_id=fake.project_id)
    with pytest.raises(ConfigurationError) as caught:
        conn.ping()
    assert "no API key" in caught.value.message
    assert "COCALC_API_KEY" in caught.value.hint
    assert fake.requests == []
    conn.close()
