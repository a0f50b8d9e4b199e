"""Settings: precedence (flag > env > file > default) and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfygate.config import ConfigError, Settings
from comfygate.config_load import load_settings, prepare_data_dir
from comfygate.serving import SECRET_SETTINGS, unknown_variables


def test_defaults_match_the_contract() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port) == ("127.0.0.1", 8288)
    assert s.backends == []
    assert s.uses_local_comfyui
    assert s.default_template == "txt2img"
    assert s.request_timeout_s == 300
    assert s.poll_interval_s == 1.0
    assert s.max_body_mb == 20
    assert s.log_format == "text"
    assert s.data_dir == Path("./comfygate-data")


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('port = 9000\nhost = "0.0.0.0"\nlog_format = "json"\n')
    env = {"COMFYGATE_PORT": "9100", "COMFYGATE_BACKENDS": "http://a:8188, b=http://b:8188"}
    s = load_settings(cfg, {"port": 9200}, environ=env)
    assert s.port == 9200
    assert s.host == "0.0.0.0"
    assert s.log_format == "json"
    assert s.backends == ["http://a:8188", "b=http://b:8188"]
    assert not s.uses_local_comfyui
    assert load_settings(cfg, environ=env).port == 9100
    assert load_settings(cfg, environ={}).port == 9000


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[comfygate]\nrequest_timeout_s = 12.5\n")
    s = load_settings(environ={"COMFYGATE_CONFIG": str(cfg)})
    assert s.request_timeout_s == 12.5


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"COMFYGATE_PORT": "99999"}, "PORT"),
        ({"COMFYGATE_PORT": "eighty"}, "PORT"),
        ({"COMFYGATE_BACKENDS": "localhost:8188"}, "not an http(s) URL"),
        ({"COMFYGATE_BACKENDS": "http://h:99999999"}, "invalid port"),
        ({"COMFYGATE_LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"COMFYGATE_REQUEST_TIMEOUT_S": "-1"}, "REQUEST_TIMEOUT_S"),
    ],
)
def test_bad_settings_fail_with_one_line(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match=r"PROT.*unknown setting"):
        load_settings(cfg, environ={})


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, environ={})


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = load_settings(overrides={"data_dir": str(blocker / "sub")}, environ={})
    with pytest.raises(ConfigError, match=r"DATA_DIR .* is not writable"):
        prepare_data_dir(s)


def test_data_dir_is_created(tmp_path: Path) -> None:
    s = load_settings(overrides={"data_dir": str(tmp_path / "a" / "b")}, environ={})
    assert prepare_data_dir(s).is_dir()


def test_every_setting_is_documented_and_has_a_flag_or_says_why_not() -> None:
    """`serve --help` covers every setting: a flag with its meaning, variable and default,
    or (secrets) a line saying where to set it."""
    from click.testing import CliRunner

    from comfygate.cli import main

    text = " ".join(CliRunner().invoke(main, ["serve", "--help"]).output.split())
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no description"
        if name in SECRET_SETTINGS:
            assert name.upper() in text.split("have no flag")[0], name
        else:
            assert "--" + name.replace("_", "-") + " " in text, name
        assert f"COMFYGATE_{name.upper()}" in text or name in SECRET_SETTINGS, name


def test_a_mistyped_variable_is_named_with_the_likely_one() -> None:
    env = {
        "COMFYGATE_BACKEND": "http://gpu:8188",
        "COMFYGATE_REQUEST_TIMEOUT": "5",
        "COMFYGATE_PORT": "1",
        "COMFYGATE_SERVER": "http://x",
        "COMFYGATE_XYZZY": "1",
        "OTHER_BACKEND": "1",
    }
    assert unknown_variables(env) == [
        "COMFYGATE_BACKEND is not a ComfyGate setting and is ignored; "
        "did you mean COMFYGATE_BACKENDS?",
        "COMFYGATE_REQUEST_TIMEOUT is not a ComfyGate setting and is ignored; "
        "did you mean COMFYGATE_REQUEST_TIMEOUT_S?",
        "COMFYGATE_XYZZY is not a ComfyGate setting and is ignored",
    ]


def test_config_shows_each_value_with_its_source_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from comfygate.cli import main

    cfg = tmp_path / "gw.toml"
    cfg.write_text('host = "0.0.0.0"\nport = 9000\nwebhook_secret = "file-secret"\n')
    monkeypatch.setenv("COMFYGATE_PORT", "9100")
    monkeypatch.setenv("COMFYGATE_API_KEYS", "key-one-secret,key-two-secret:admin")
    monkeypatch.setenv("COMFYGATE_REDIS_URL", "redis://:redis-secret@127.0.0.1:6379/0")
    monkeypatch.setenv("COMFYGATE_BACKEND", "http://gpu:8188")
    result = CliRunner().invoke(main, ["config", "--config", str(cfg), "--threads", "8"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["HOST"] == ["0.0.0.0", "file", str(cfg)]
    assert rows["PORT"] == ["9100", "env", "COMFYGATE_PORT"]
    assert rows["THREADS"] == ["8", "flag"]
    assert rows["DEFAULT_TEMPLATE"] == ["txt2img", "default"]
    assert rows["API_KEYS"] == ["***", "(2", "keys)", "env", "COMFYGATE_API_KEYS"]
    assert rows["WEBHOOK_SECRET"] == ["***", "file", str(cfg)]
    assert rows["REDIS_URL"][0] == "redis://:***@127.0.0.1:6379/0"
    assert rows["BACKENDS"] == ["unset", "default"]
    assert "secret" not in result.stdout
    assert "did you mean COMFYGATE_BACKENDS?" in result.stderr
    # serve --print-config is the same listing, for the same command line.
    again = CliRunner().invoke(
        main, ["serve", "--config", str(cfg), "--threads", "8", "--print-config"]
    )
    assert again.stdout == result.stdout
