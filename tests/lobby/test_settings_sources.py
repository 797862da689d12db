"""Where lobby settings come from: one flag per field of :class:`LobbySettings` (generated
from the model, with its ``SHARDS_*`` name and description), ``SHARDS_*`` variables and a
``--config`` TOML file, in the order flags > environment > TOML > defaults; bad values and
unknown TOML keys are one :class:`ConfigError` naming where they came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lobby.__main__ import build_parser, flag, parse_args, settings_from
from lobby.config import LobbySettings, env_name, load_settings, read_config_file
from protocol.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_shards_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("SHARDS_"):
            monkeypatch.delenv(key)


def test_every_setting_has_a_description_and_a_flag_naming_its_variable() -> None:
    parser = build_parser()
    actions = {option: action for action in parser._actions for option in action.option_strings}
    for name, info in LobbySettings.model_fields.items():
        assert info.description, f"{name} has no description"
        action = actions.get(flag(name))
        assert action is not None, f"no {flag(name)}"
        assert action.dest == name
        assert action.help is not None and env_name(name) in action.help
        assert info.description.replace("%", "%%") in action.help


def test_the_existing_flags_still_parse() -> None:
    args = parse_args(
        ["--host", "192.0.2.1", "--port", "0", "--data-dir", "d", "--database-url",
         "sqlite:///x.db", "--world-file", "w.json", "--stun-port", "3478",
         "--log-level", "DEBUG", "--log-format", "json"]
    )  # fmt: skip
    settings = settings_from(args)
    assert (settings.host, settings.port, settings.data_dir) == ("192.0.2.1", 0, Path("d"))
    assert settings.database_url == "sqlite:///x.db"
    assert settings.world_file == Path("w.json")
    assert (settings.stun_port, settings.stun_enabled) == (3478, True)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings_from(parse_args(["--no-stun"])).stun_enabled is False
    with pytest.raises(SystemExit) as exc:
        parse_args(["--no-stun", "--stun-port", "1"])
    assert exc.value.code == 2


def test_flags_of_every_kind_reach_the_settings() -> None:
    settings = settings_from(
        parse_args(
            ["--ws-compress", "--no-metrics-enabled", "--admin-accounts", "Alice",
             "--admin-accounts", "bob", "--hash-pool", "thread", "--ws-heartbeat", "12.5",
             "--hash-workers", "3", "--ws-fernet-secret", "s3cret", "--session-ttl", "90"]
        )
    )  # fmt: skip
    assert settings.ws_compress is True and settings.metrics_enabled is False
    assert settings.admin_accounts == ["alice", "bob"]
    assert settings.hash_pool == "thread" and settings.hash_workers == 3
    assert settings.ws_heartbeat == 12.5 and settings.session_ttl == 90.0
    assert settings.ws_fernet_secret is not None
    assert settings.ws_fernet_secret.get_secret_value() == "s3cret"
    untouched = settings_from(parse_args([]))
    assert untouched == LobbySettings()


def test_flags_beat_the_environment_which_beats_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "lobby.toml"
    toml.write_text(
        'port = 1111\nhost = "192.0.2.1"\nsession_ttl = 10\nadmin_accounts = ["Root"]\n'
        "ws_compress = true\n"
    )
    monkeypatch.setenv("SHARDS_PORT", "2222")
    monkeypatch.setenv("SHARDS_SESSION_TTL", "20")
    settings = settings_from(parse_args(["--config", str(toml), "--port", "3333"]))
    assert settings.port == 3333  # flag > env > TOML
    assert settings.session_ttl == 20.0  # env > TOML
    assert settings.host == "192.0.2.1" and settings.admin_accounts == ["root"]  # TOML > default
    assert settings.ws_compress is True
    assert settings.reconnect_grace == LobbySettings().reconnect_grace  # default
    # the file is read for this call only: a later LobbySettings() does not see it
    assert LobbySettings().host == "127.0.0.1"


def test_unknown_toml_keys_are_named(tmp_path: Path) -> None:
    toml = tmp_path / "lobby.toml"
    toml.write_text('port = 1\nprot = 2\n"data-dir" = "x"\n[metrics]\nport = 3\n')
    with pytest.raises(ConfigError) as exc:
        read_config_file(toml)
    message = exc.value.message
    assert "unknown settings: data-dir, metrics, prot " in message and str(toml) in message


def test_bad_values_name_their_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "lobby.toml"
    toml.write_text('port = 70000\nhash_pool = "gpu"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(config_file=toml)
    assert f"{toml}: port=70000" in exc.value.message
    assert f"{toml}: hash_pool=gpu" in exc.value.message
    monkeypatch.setenv("SHARDS_SESSION_TTL", "-1")
    with pytest.raises(ConfigError, match=r"SHARDS_SESSION_TTL=-1") as exc:
        settings_from(parse_args(["--port", "x"]))
    assert "--port=x" in exc.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("port = \n", "not valid TOML"), (None, "cannot read it")],
)
def test_an_unreadable_toml_file_is_one_error(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    toml = tmp_path / "lobby.toml"
    if text is not None:
        toml.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_settings(config_file=toml)


def test_a_database_url_that_cannot_work_is_a_settings_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        settings_from(parse_args(["--database-url", "mysql://u@h/db"]))


def test_the_readme_toml_example_is_a_valid_config(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"^```toml\n(.*?)^```", readme, re.M | re.S)
    toml = tmp_path / "lobby.toml"
    toml.write_text(example)
    settings = load_settings(config_file=toml)
    assert settings.admin_accounts == ["alice"] and settings.ws_compress is True
