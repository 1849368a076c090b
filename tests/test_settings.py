"""Settings: precedence flags > env > .env > YAML > defaults, unknown keys, one line per bad
value, secrets never shown."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snap_mqtt.settings import (Settings, SettingsError, add_common_arguments, env_name, host_slug,
                                load_from_args)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No SNAP_* variable of the machine running the tests, and no stray .env."""
    for k in list(os.environ):
        if k.upper().startswith("SNAP_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def write_yaml(tmp_path: Path, data, name: str = "config.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_defaults():
    s = Settings.load()
    assert (s.refractory, s.gap, s.max_count, s.max_event_age) == (0.15, 0.6, 3, 5.0)
    assert s.threshold is None and s.model_path is None
    assert (s.base_topic, s.discovery_prefix) == ("snap_mqtt", "homeassistant")
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.reconnect_max_delay, s.mqtt.tls) == ("localhost", 1883, 30.0, False)
    assert s.node_id == host_slug() and s.client_id == f"snap_mqtt_{s.node_id}"
    assert s.capture_dir is None and s.audio.device is None


def test_each_layer_beats_the_one_below(tmp_path, monkeypatch):
    cfg = write_yaml(tmp_path, {"gap": 0.5, "max_count": 2, "refractory": 0.2, "node_id": "yaml",
                                "mqtt": {"host": "yaml-host", "port": 1001, "username": "y"}})
    (tmp_path / ".env").write_text("SNAP_MAX_COUNT=4\nSNAP_REFRACTORY=0.25\nSNAP_MQTT__PORT=1002\n")
    monkeypatch.setenv("SNAP_REFRACTORY", "0.3")
    monkeypatch.setenv("SNAP_MQTT__HOST", "env-host")
    s = Settings.load(cfg, {"node_id": "flag", "gap": None})
    assert s.gap == 0.5  # YAML over default (a flag not given is None: ignored)
    assert s.max_count == 4  # .env over YAML
    assert s.refractory == 0.3  # env over .env
    assert s.node_id == "flag"  # flag over everything
    # nested settings merge across layers field by field
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.username) == ("env-host", 1002, "y")
    s = Settings.load(cfg, {"mqtt.host": "flag-host", "mqtt": {"port": 1003}})
    assert (s.mqtt.host, s.mqtt.port) == ("flag-host", 1003)


def test_env_names(monkeypatch):
    assert env_name("mqtt.host") == "SNAP_MQTT__HOST" and env_name("node_id") == "SNAP_NODE_ID"
    monkeypatch.setenv("SNAP_NODE_ID", "kitchen")
    monkeypatch.setenv("SNAP_MODEL_PATH", "/models/mine.pt")
    monkeypatch.setenv("SNAP_MQTT__PASSWORD", "hunter2")
    monkeypatch.setenv("SNAP_AUDIO__DEVICE", "2")
    monkeypatch.setenv("SNAP_MQTT__TLS", "true")
    s = Settings.load()
    assert s.node_id == "kitchen" and s.model_path == Path("/models/mine.pt")
    assert s.mqtt.password.get_secret_value() == "hunter2" and s.mqtt.tls is True
    assert s.audio.device == 2  # an index, not the name "2"
    assert s.resolved_model_path() == Path("/models/mine.pt")
    monkeypatch.delenv("SNAP_MODEL_PATH")
    assert Settings.load().resolved_model_path().name == "snap-default.pt"


def test_yaml_keys_may_use_dashes(tmp_path):
    s = Settings.load(write_yaml(tmp_path, "max-count: 1\nmqtt:\n  reconnect-max-delay: 5\n"))
    assert s.max_count == 1 and s.mqtt.reconnect_max_delay == 5


def test_unknown_keys_are_rejected_everywhere(tmp_path, monkeypatch):
    cfg = write_yaml(tmp_path, {"gapp": 1, "mqtt": {"hots": "x"}, "audio": {"rate": 1}})
    with pytest.raises(SettingsError) as e:
        Settings.load(cfg)
    assert sorted(e.value.problems) == ["audio.rate: unknown setting (got 1)", "gapp: unknown setting (got 1)",
                                        "mqtt.hots: unknown setting (got 'x')"]
    (tmp_path / ".env").write_text("SNAP_TRESHOLD=0.5\n")
    with pytest.raises(SettingsError) as e:
        Settings.load()
    assert e.value.problems == ["treshold: unknown setting (got '0.5')"]


def test_a_shared_env_file_may_hold_other_programs_variables(tmp_path):
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=home\nTZ=Europe/Berlin\nSNAP_GAP=0.3\n")
    assert Settings.load().gap == 0.3


def test_every_invalid_value_is_reported_on_its_own_line_naming_the_field(tmp_path, monkeypatch):
    cfg = write_yaml(tmp_path, {"threshold": 1.5, "gap": -1, "max_count": "many",
                                "mqtt": {"port": 70000, "keepalive": 1}, "node_id": "my node!"})
    monkeypatch.setenv("SNAP_AUDIO__CHANNELS", "0")
    with pytest.raises(SettingsError) as e:
        Settings.load(cfg)
    fields = sorted(p.split(":")[0] for p in e.value.problems)
    assert fields == ["audio.channels", "gap", "max_count", "mqtt.keepalive", "mqtt.port", "node_id", "threshold"]
    text = str(e.value)
    assert len(text.splitlines()) == 1 + 7  # a heading, then one line per field
    assert "mqtt.port: Input should be less than or equal to 65535 (got 70000)" in text


def test_bad_config_files_are_named(tmp_path):
    with pytest.raises(SettingsError, match="nope.yaml: config file not found"):
        Settings.load(tmp_path / "nope.yaml")
    with pytest.raises(SettingsError, match="bad.yaml: not valid YAML"):
        Settings.load(write_yaml(tmp_path, "gap: [1, 2\n", "bad.yaml"))
    with pytest.raises(SettingsError, match="list.yaml: the top level must be a mapping"):
        Settings.load(write_yaml(tmp_path, "- 1\n- 2\n", "list.yaml"))
    assert Settings.load(write_yaml(tmp_path, "", "empty.yaml")).gap == 0.6  # an empty file: all defaults
    with pytest.raises(SettingsError, match="mqtt.tls_ca: Value error, file not found"):
        Settings.load(write_yaml(tmp_path, {"mqtt": {"tls_ca": str(tmp_path / "ca.pem")}}, "tls.yaml"))


def test_the_password_never_appears_in_repr_errors_or_redacted_dumps(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAP_MQTT__PASSWORD", "s3cret-pw")
    s = Settings.load()
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in str(s)
    assert s.redacted()["mqtt"]["password"] == "***"
    assert "s3cret-pw" not in str(s.redacted())
    monkeypatch.delenv("SNAP_MQTT__PASSWORD")  # else it would win over the file's
    cfg = write_yaml(tmp_path, {"mqtt": {"password": ["s3cret-pw"], "port": 0}})
    with pytest.raises(SettingsError) as e:
        Settings.load(cfg)
    assert "mqtt.password" in str(e.value) and "s3cret-pw" not in str(e.value)


def test_host_slug():
    assert host_slug("Living-Room.Pi.local") == "living_room"
    assert host_slug("---") == "snap"
    assert host_slug("pi4") == "pi4"


def test_topics_are_normalised_and_wildcards_refused():
    assert Settings.load(cli_overrides={"base_topic": "/home/snaps/"}).base_topic == "home/snaps"
    with pytest.raises(SettingsError, match="base_topic"):
        Settings.load(cli_overrides={"base_topic": "snaps/#"})


def test_flags_map_onto_settings(tmp_path):
    cfg = write_yaml(tmp_path, {"gap": 0.5, "threshold": 0.3})
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, mqtt=True)
    args = parser.parse_args(["--config", str(cfg), "--threshold", "0.8", "--max-count", "2", "--host", "h",
                              "--model", "m.pt"])
    s = load_from_args(args)
    assert (s.gap, s.threshold, s.max_count, s.mqtt.host, s.model_path) == (0.5, 0.8, 2, "h", Path("m.pt"))


def test_the_example_config_is_valid_and_complete():
    s = Settings.load(ROOT / "config.example.yaml")
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    # every top-level setting and every mqtt/audio field is shown in the example
    assert set(data) == set(Settings.model_fields)
    assert set(data["mqtt"]) == set(type(s.mqtt).model_fields)
    assert set(data["audio"]) == set(type(s.audio).model_fields)


_values = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(), max_size=2))
_keys = st.sampled_from(["gap", "threshold", "max_count", "refractory", "node_id", "base_topic", "mqtt",
                         "audio", "capture_dir", "bogus", "max_event_age", "hop_samples"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_keys, st.one_of(_values, st.dictionaries(st.sampled_from(
    ["host", "port", "password", "keepalive", "device", "channels", "x"]), _values, max_size=3)), max_size=6))
def test_random_configs_load_or_fail_with_a_settings_error_only(tmp_path, data):
    cfg = write_yaml(tmp_path, data, "random.yaml")
    try:
        s = Settings.load(cfg)
    except SettingsError as e:
        assert e.problems and all(": " in p for p in e.problems)
        pw = data.get("mqtt", {}).get("password") if isinstance(data.get("mqtt"), dict) else None
        if isinstance(pw, str) and pw:
            assert all(pw not in p for p in e.problems if p.startswith("mqtt.password"))
    else:
        assert isinstance(s, Settings)
