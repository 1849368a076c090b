"""A real mosquitto that wants a password (mosquitto_passwd) and speaks TLS (a CA and a server
certificate made with openssl in the test), against `snap-mqtt check` and `snap-mqtt listen`.

- right credentials over TLS: connected, and the listener's availability reaches the broker;
- wrong password: a clear error naming the cause, logged once (not once per retry);
- a CA that did not sign the broker's certificate: a TLS failure is reported, and nothing ever
  reaches the broker's plaintext port (no fallback);
- the password never appears in any output, not even with --verbose or --show-config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf
import yaml
from services import SecureBroker, make_ca

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "snapper", "pw-Zq8vL2-not-for-logs"
WRONG = "wrong-Pw-77x"


@pytest.fixture(scope="module")
def broker():
    b = SecureBroker.create_secure({USER: PASSWORD, "other": "other-pw"}, tls=True).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A real TorchScript model file (never fires): the broker tests need no trained model."""
    import torch

    from snap_mqtt.model_file import ModelMetadata, save_model

    class Quiet(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0]) + 0.01

    meta = ModelMetadata(sample_rate=16000, window_samples=4000, hop_samples=320, threshold=0.5,
                         trainer_version="test", onset_min_samples=1440, onset_max_samples=3360)
    return save_model(torch.jit.script(Quiet()), meta, tmp_path_factory.mktemp("model") / "quiet.pt")


@pytest.fixture(scope="module")
def short_input(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("input") / "short.flac"
    x = (np.random.default_rng(0).standard_normal(3 * 16000) * 0.01).astype(np.float32)
    sf.write(str(p), x, 16000, subtype="PCM_16")
    return p


def _config(tmp: Path, broker: SecureBroker, *, password: str, ca: Path | None, tls: bool = True,
            node: str = "authtest") -> Path:
    mqtt_cfg = {"host": "127.0.0.1", "port": broker.tls_port if tls else broker.port, "username": USER,
                "password": password, "tls": tls, "reconnect_max_delay": 1}
    if ca is not None:
        mqtt_cfg["tls_ca"] = str(ca)
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump({"node_id": node, "mqtt": mqtt_cfg}))
    return p


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAP_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snap_mqtt.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _broker_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if "broker:" in ln]
    assert len(lines) == 1, out
    return lines[0]


# --- snap-mqtt check --------------------------------------------------------------------------------


def test_check_connects_with_password_over_tls(broker, tiny_model, short_input, tmp_path):
    cfg = _config(tmp_path, broker, password=PASSWORD, ca=broker.tls.ca_cert)
    r = _cli("-v", "check", "--config", str(cfg), "--model", str(tiny_model), "--input", str(short_input),
             "--show-config", cwd=tmp_path)
    line = _broker_line(r.stdout)
    assert line.startswith("[ok]") and "TLS" in line, r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    model_line = next(ln for ln in r.stdout.splitlines() if ln.startswith("[ok] model"))
    assert "2nd/3rd snap of a gesture off" in model_line  # the tiny model carries no follow threshold
    assert PASSWORD not in r.stdout + r.stderr
    assert "password" in r.stdout  # it does say that one is set, or shows it masked


def test_check_wrong_password_says_so(broker, tiny_model, short_input, tmp_path):
    cfg = _config(tmp_path, broker, password=WRONG, ca=broker.tls.ca_cert)
    r = _cli("-v", "check", "--config", str(cfg), "--model", str(tiny_model), "--input", str(short_input),
             "--show-config", cwd=tmp_path)
    line = _broker_line(r.stdout)
    assert line.startswith("[FAIL]"), r.stdout
    assert "refused" in line and ("Not authorized" in line or "Bad user name or password" in line), line
    assert "mqtt.password" in line  # names what to fix
    assert r.returncode != 0
    assert WRONG not in r.stdout + r.stderr and PASSWORD not in r.stdout + r.stderr


def test_check_bad_ca_reports_tls_failure_without_plaintext_fallback(broker, tiny_model, short_input, tmp_path):
    evil_ca, _ = make_ca(tmp_path, "evil")
    cfg = _config(tmp_path, broker, password=PASSWORD, ca=evil_ca)
    plain_before = broker.connections_on(broker.port)
    r = _cli("check", "--config", str(cfg), "--model", str(tiny_model), "--input", str(short_input),
             cwd=tmp_path)
    line = _broker_line(r.stdout)
    assert line.startswith("[FAIL]") and "TLS" in line and "certificate verify failed" in line, line
    assert r.returncode != 0
    time.sleep(0.2)  # let mosquitto write its log
    assert broker.connections_on(broker.port) == plain_before, "something reached the plaintext port"
    assert PASSWORD not in r.stdout + r.stderr


def test_check_missing_ca_file_names_it(broker, tiny_model, short_input, tmp_path):
    cfg = _config(tmp_path, broker, password=PASSWORD, ca=None)
    data = yaml.safe_load(cfg.read_text())
    data["mqtt"]["tls_ca"] = str(tmp_path / "no-such-ca.crt")
    cfg.write_text(yaml.safe_dump(data))
    r = _cli("check", "--config", str(cfg), "--model", str(tiny_model), "--input", str(short_input), cwd=tmp_path)
    assert r.returncode != 0
    assert "mqtt.tls_ca" in r.stdout and "no-such-ca.crt" in r.stdout, r.stdout
    assert PASSWORD not in r.stdout + r.stderr


# --- snap-mqtt listen ---------------------------------------------------------------------------------


class _Watcher:
    """Subscribes over TLS with good credentials and records the listener's availability."""

    def __init__(self, broker: SecureBroker, node: str):
        self.messages: list[str] = []
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{node}")
        c.username_pw_set(USER, PASSWORD)
        c.tls_set(ca_certs=str(broker.tls.ca_cert))
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(f"snap_mqtt/{node}/availability", qos=1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda cl, ud, msg: self.messages.append(msg.payload.decode())
        c.connect("127.0.0.1", broker.tls_port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10), "watcher could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _listen(cfg: Path, model: Path, audio: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("-v", "listen", "--config", str(cfg), "--model", str(model), "--input", str(audio),
                "--speed", "4", *extra, cwd=cwd)


def test_listen_with_password_over_tls_goes_online(broker, tiny_model, short_input, tmp_path):
    node = "authok"
    cfg = _config(tmp_path, broker, password=PASSWORD, ca=broker.tls.ca_cert, node=node)
    w = _Watcher(broker, node)
    plain_before = broker.connections_on(broker.port)
    try:
        r = _listen(cfg, tiny_model, short_input, tmp_path)
        time.sleep(0.3)
    finally:
        w.close()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "online" in w.messages and w.messages[-1] == "offline", (w.messages, out)
    assert broker.connections_on(broker.port) == plain_before
    assert PASSWORD not in out


def test_listen_wrong_password_logs_cause_once_and_keeps_going(broker, tiny_model, short_input, tmp_path):
    node = "authbad"
    cfg = _config(tmp_path, broker, password=WRONG, ca=broker.tls.ca_cert, node=node)
    w = _Watcher(broker, node)
    try:
        r = _listen(cfg, tiny_model, short_input, tmp_path)
    finally:
        w.close()
    out = r.stdout + r.stderr
    refused = [ln for ln in out.splitlines() if "refused" in ln]
    assert refused, out
    assert any("Not authorized" in ln or "Bad user name or password" in ln for ln in refused), refused
    assert any("mqtt.password" in ln for ln in refused), refused
    # the client retried (reconnect cap 1 s over a ~4 s run) but said so once
    assert len(refused) == 1, refused
    assert "online" not in w.messages
    assert "stopped:" in out  # it ran through the file and shut down cleanly
    assert WRONG not in out and PASSWORD not in out


def test_listen_bad_ca_fails_tls_and_never_uses_plaintext(broker, tiny_model, short_input, tmp_path):
    evil_ca, _ = make_ca(tmp_path, "evil")
    node = "authbadca"
    cfg = _config(tmp_path, broker, password=PASSWORD, ca=evil_ca, node=node)
    plain_before = broker.connections_on(broker.port)
    tls_before = broker.tls_attempts()
    r = _listen(cfg, tiny_model, short_input, tmp_path)
    out = r.stdout + r.stderr
    tls_lines = [ln for ln in out.splitlines() if "TLS handshake" in ln]
    assert len(tls_lines) == 1 and "certificate verify failed" in tls_lines[0], out
    # it did try, over TLS (give mosquitto a moment to write its log)
    deadline = time.monotonic() + 5.0
    while broker.tls_attempts() <= tls_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.tls_attempts() > tls_before
    assert broker.connections_on(broker.port) == plain_before, "something reached the plaintext port"
    assert f"as {node}" not in broker.log and "snap_mqtt_" + node not in broker.log  # never logged in
    assert PASSWORD not in out


def test_password_from_environment_never_shown(broker, tiny_model, short_input, tmp_path):
    """The same secret given as SNAP_MQTT__PASSWORD, with a bad value elsewhere in the config:
    the error lists the bad field and still hides the password."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"node_id": "envpw", "gap": -1,
                                   "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": USER}}))
    env = {**_env(), "SNAP_MQTT__PASSWORD": PASSWORD}
    r = subprocess.run([sys.executable, "-m", "snap_mqtt.cli", "check", "--config", str(cfg), "--model",
                        str(tiny_model), "--input", str(short_input), "--show-config"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode != 0 and "gap" in r.stdout, r.stdout + r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    cfg.write_text(yaml.safe_dump({"node_id": "envpw",
                                   "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": USER}}))
    r = subprocess.run([sys.executable, "-m", "snap_mqtt.cli", "-v", "check", "--config", str(cfg), "--model",
                        str(tiny_model), "--input", str(short_input), "--show-config"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert _broker_line(r.stdout).startswith("[ok]"), r.stdout + r.stderr
    assert PASSWORD not in r.stdout + r.stderr
