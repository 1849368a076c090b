"""Listener-side faults (issue 5), each produced for real where it can be: the broker down at
start, the network cut and the broker restarted mid-stream, the PulseAudio source suspended under
a running stream, a model file replaced under a running listener, bad model files, credentials
and TLS. Stale events must never arrive; nothing may need a restart."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from listener_support import (ListenerProc, Proxy, Recorder, age_on_arrival, event_times, make_energy_model,
                              make_glitchy_model, make_never_model, make_scene)
from services import SINK, SecureBroker
from snap_mqtt import cli
from snap_mqtt.mqtt_client import MqttLink, MqttOptions
from snap_mqtt.topics import Topics

NODE = "faultnode"
T = f"snap_mqtt/{NODE}"
N_CONFIGS = 7
MAX_AGE = 2.0


def _wait_log(proc: ListenerProc, text: str, timeout: float = 30.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.log.count(text) >= count:
            return
        if proc.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in the listener log:\n{proc.log[-3000:]}")


def _configs_since(rec: Recorder, since: float) -> set[str]:
    return {m.topic for m in rec.snapshot() if m.topic.startswith("homeassistant/") and m.at >= since}


def test_broker_down_at_start_then_network_cut_and_broker_restart(tmp_path, broker):
    """Down at start: detects anyway, one log line (not one per retry), connects when the broker
    comes. Mid-stream cut and broker restart: reconnects by itself, online and discovery again,
    fresh events arrive, events older than max_event_age never do."""
    scene = make_scene(tmp_path / "scene.flac", [1.0 + 0.8 * k for k in range(70)], 60.0)
    model = make_energy_model(tmp_path / "energy.pt")
    proxy = Proxy(broker.port)  # blocked: nothing listens on the listener's port yet
    env = {"SNAP_MAX_EVENT_AGE": str(MAX_AGE), "SNAP_MQTT__RECONNECT_MAX_DELAY": "1"}
    proc = ListenerProc(["--input", str(scene), "--model", str(model), "--host", "127.0.0.1",
                         "--port", str(proxy.port), "--node-id", NODE], tmp_path, env)
    recs: list[Recorder] = []
    try:
        # 1. broker unreachable at start: the listener starts and detects regardless
        _wait_log(proc, "unreachable", timeout=60)
        _wait_log(proc, "snap {", timeout=10)
        time.sleep(MAX_AGE + 2.0)  # several retries; the first snaps are now too old to send
        assert proc.log.count("unreachable") == 1, proc.log

        rec = Recorder(broker.port, [f"{T}/#", "homeassistant/#"])
        recs.append(rec)
        up = time.monotonic()
        proxy.unblock()
        rec.wait_payload(f"{T}/availability", "online", since=up, timeout=10)
        rec.wait_for(lambda ms: len(_configs_since(rec, up)) == N_CONFIGS or None, 10, "discovery")
        _wait_log(proc, "queued event(s), dropped")
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=up), 10, "snaps once connected")
        dropped_first = proc.log.count("dropped")

        # 2. network cut mid-stream (the broker stays up): reconnect, nothing stale
        proxy.block()
        _wait_log(proc, "MQTT: disconnected", timeout=10)
        time.sleep(MAX_AGE + 2.0)
        back = time.monotonic()
        proxy.unblock()
        rec.wait_payload(f"{T}/availability", "online", since=back, timeout=10)
        rec.wait_for(lambda ms: len(_configs_since(rec, back)) == N_CONFIGS or None, 10, "discovery again")
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=back + 1.0), 10, "snaps after the cut")

        # 3. the broker itself restarts (it forgets everything: persistence off)
        broker.stop()
        proxy.block()
        time.sleep(MAX_AGE + 1.0)
        broker.start()
        rec2 = Recorder(broker.port, [f"{T}/#", "homeassistant/#"])
        recs.append(rec2)
        restarted = time.monotonic()
        proxy.unblock()
        rec2.wait_payload(f"{T}/availability", "online", since=restarted, timeout=10)
        rec2.wait_for(lambda ms: len(_configs_since(rec2, restarted)) == N_CONFIGS or None, 10,
                      "discovery after the broker restart")
        rec2.wait_for(lambda ms: rec2.on(f"{T}/snap", since=restarted + 1.0), 10, "snaps after the restart")

        # never a stale event: everything that arrived was younger than max_event_age
        snaps = rec.on(f"{T}/snap") + rec2.on(f"{T}/snap")
        ages = [age_on_arrival(m) for m in snaps]
        assert max(ages) <= MAX_AGE + 0.5, ages
        # ... and events from the outages were dropped and counted, not sent late
        assert dropped_first >= 1
        log = proc.log
        assert log.count("queued event(s), dropped") >= 3
        assert any(int(line.split("dropped ")[1].split()[0]) > 0
                   for line in log.splitlines() if "queued event(s), dropped" in line), log
        # no duplicates: each snap (by its onset time) arrived at most once per subscriber
        for r in recs:
            t = event_times(r.on(f"{T}/snap"))
            assert len(t) == len(set(t))
        proc.signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.stop()
        proxy.block()
        for r in recs:
            r.close()


def test_model_file_replaced_and_sighup_reload_without_restart(tmp_path, broker):
    model_path = tmp_path / "model.pt"
    make_never_model(model_path)
    glitch = 20.0  # audio seconds: well after the steps before it, even on a busy machine
    scene = make_scene(tmp_path / "scene.flac", [1.0 + 1.0 * k for k in range(40)], 42.0, glitch_at=glitch)
    secret = "hunter2-secret-pw"
    rec = Recorder(broker.port, [f"{T}/#"])
    proc = ListenerProc(["--input", str(scene), "--model", str(model_path), "--host", "127.0.0.1",
                         "--port", str(broker.port), "--node-id", NODE], tmp_path,
                        {"SNAP_MQTT__USERNAME": "snapuser", "SNAP_MQTT__PASSWORD": secret})
    try:
        online = rec.wait_payload(f"{T}/availability", "online", timeout=60).at
        time.sleep(2.0)
        assert rec.on(f"{T}/snap") == []  # the never-firing model hears nothing

        # a new model file appears (atomically, as `snap-train train --export` writes it)
        make_energy_model(model_path)
        _wait_log(proc, "model reloaded", timeout=10)
        swapped = time.monotonic()
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=swapped), 10, "snaps from the new model")
        pid = proc.proc.pid

        # a broken file replacing it is refused; the running model carries on
        model_path.write_bytes(b"not a model")
        _wait_log(proc, "model reload failed, keeping the current model", timeout=10)
        assert str(model_path) in proc.log
        broken = time.monotonic()
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=broken + 0.5), 10, "snaps after a bad reload")

        # SIGHUP reloads on demand (a model that crashes on loud windows: see below)
        make_glitchy_model(model_path)
        _wait_log(proc, "model reloaded", count=2, timeout=10)
        proc.signal(signal.SIGHUP)
        _wait_log(proc, "received SIGHUP")
        _wait_log(proc, "model reloaded", count=3, timeout=10)
        hup = time.monotonic()
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=hup), 10, "snaps after SIGHUP")

        # a crash inside detection (the model raises on the loud glitch) is logged and survived
        _wait_log(proc, "error while processing audio", timeout=glitch + 10)
        assert "glitch: sample above 0.9" in proc.log
        crashed = time.monotonic()
        rec.wait_for(lambda ms: [m for m in rec.on(f"{T}/snap", since=crashed) if m.json()["time"] > glitch + 0.5],
                     10, "snaps after the crash")
        assert proc.proc.poll() is None and proc.proc.pid == pid  # never restarted
        proc.signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert secret not in proc.log
        assert online
    finally:
        proc.stop()
        rec.close()


def test_pulseaudio_source_suspended_under_a_running_stream(tmp_path, broker, pulse):
    """The capture device stops delivering (PulseAudio sink and its monitor suspended): offline,
    retries, online again when it returns, events again; the same process throughout."""
    scene = make_scene(tmp_path / "scene.flac", [0.5, 1.5, 1.8], 2.6)
    model = make_energy_model(tmp_path / "energy.pt")
    rec = Recorder(broker.port, [f"{T}/#"])
    proc = ListenerProc(["--model", str(model), "--host", "127.0.0.1", "--port", str(broker.port),
                         "--node-id", NODE], tmp_path,
                        {"XDG_RUNTIME_DIR": pulse.env["XDG_RUNTIME_DIR"], "SNAP_AUDIO__BLOCK_SECONDS": "0.02"})
    try:
        rec.wait_payload(f"{T}/availability", "online", timeout=60)
        pulse.play(scene).wait(20)
        rec.wait_for(lambda ms: len(rec.on(f"{T}/snap")) >= 3 or None, 10, "three snaps captured")

        suspended = time.monotonic()
        pulse.pactl("suspend-sink", SINK, "1")
        rec.wait_payload(f"{T}/availability", "offline", since=suspended, timeout=15)
        pulse.pactl("suspend-sink", SINK, "0")
        resumed = time.monotonic()
        rec.wait_payload(f"{T}/availability", "online", since=resumed, timeout=20)
        pulse.play(scene).wait(20)
        rec.wait_for(lambda ms: len(rec.on(f"{T}/snap", since=resumed)) >= 3 or None, 10,
                     "snaps after the input came back")
        assert "audio: input lost or unavailable" in proc.log
        proc.signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        pulse.pactl("suspend-sink", SINK, "0")
        proc.stop()
        rec.close()


# ---- start-up errors: clear, naming the file, non-zero exit ------------------------------------------

def test_missing_model_file_is_a_clear_error_at_start(tmp_path, broker):
    missing = tmp_path / "nope" / "model.pt"
    proc = ListenerProc(["--model", str(missing), "--input", "demo/demo-scene.flac", "--port", str(broker.port)],
                        tmp_path)
    rc = proc.wait(60)
    assert rc == 2
    out = proc.log
    assert str(missing) in out and "not found" in out and "Traceback" not in out


@pytest.mark.parametrize("content,expect", [
    (b"\x00garbage" * 100, "not a TorchScript model file"),
    (None, "not a snap model"),
])
def test_corrupt_or_foreign_model_file(tmp_path, capsys, content, expect):
    import torch

    path = tmp_path / "model.pt"
    if content is None:  # a valid TorchScript file that is not a snap-mqtt model (no metadata)
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    else:
        path.write_bytes(content)
    rc = cli.main(["listen", "--model", str(path), "--input", "demo/demo-scene.flac"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(path) in err and expect in err


# ---- credentials and TLS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secure_broker():
    b = SecureBroker.create_secure({"snap": "right-password"}).start()
    yield b
    b.stop()


def test_check_reports_wrong_password_without_showing_it(secure_broker, tmp_path, monkeypatch, capsys):
    model = make_energy_model(tmp_path / "energy.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SNAP_MQTT__USERNAME", "snap")
    monkeypatch.setenv("SNAP_MQTT__PASSWORD", "wrong-password-xyz")
    rc = cli.main(["check", "--model", str(model), "--input", str(tmp_path / "none.flac"),
                   "--host", "127.0.0.1", "--port", str(secure_broker.port), "--show-config"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "[FAIL] broker" in out and "refused" in out and "mqtt.password" in out
    assert "[ok] model" in out and "[FAIL] input" in out
    assert "wrong-password-xyz" not in out and "***" in out

    monkeypatch.setenv("SNAP_MQTT__PASSWORD", "right-password")
    rc = cli.main(["check", "--model", str(model), "--input", "demo/demo-scene.flac", "--host", "127.0.0.1",
                   "--port", str(secure_broker.port)])
    out = capsys.readouterr().out
    assert "[ok] broker" in out and "right-password" not in out
    # the shipped model's follow threshold is shown, and a setting overrides it
    from snap_mqtt.model_file import default_model_path, load_model

    follow = load_model(default_model_path()).metadata.follow_threshold
    base = ["check", "--input", "demo/demo-scene.flac", "--host", "127.0.0.1", "--port", str(secure_broker.port)]
    cli.main(base)
    assert f"2nd/3rd snap of a gesture {follow:.2f})" in capsys.readouterr().out
    monkeypatch.setenv("SNAP_FOLLOW_THRESHOLD", "0.7")
    cli.main(base)
    assert "2nd/3rd snap of a gesture 0.70)" in capsys.readouterr().out


def test_tls_with_the_wrong_ca_never_falls_back_to_plaintext(secure_broker, tmp_path, caplog):
    from services import make_ca

    other_ca, _ = make_ca(tmp_path, "other")
    opts = MqttOptions(host="127.0.0.1", port=secure_broker.tls_port, username="snap", password="right-password",
                       tls=True, ca_certs=str(other_ca), reconnect_max_delay=1)
    before_plain = secure_broker.connections_on(secure_broker.port)
    caplog.set_level(logging.INFO, logger="snap_mqtt")
    link = MqttLink(opts, Topics(NODE), "test")
    link.start()
    time.sleep(3.0)  # a few attempts
    link.stop()
    assert not link.connected
    tls_errors = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(tls_errors) == 1 and "never plaintext" in tls_errors[0].getMessage()
    assert secure_broker.connections_on(secure_broker.port) == before_plain  # no plaintext attempt
    assert "right-password" not in caplog.text

    # the right CA connects over TLS
    good = MqttLink(MqttOptions(host="127.0.0.1", port=secure_broker.tls_port, username="snap",
                                password="right-password", tls=True, ca_certs=str(secure_broker.tls.ca_cert)),
                    Topics(NODE), "test")
    good.start()
    deadline = time.monotonic() + 10
    while not good.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    good.stop()
    assert secure_broker.connections_on(secure_broker.tls_port) >= 1


def test_unreadable_ca_file_is_a_clear_error(tmp_path):
    from snap_mqtt.mqtt_client import MqttConfigError

    bad = tmp_path / "ca.pem"
    bad.write_text("this is not a certificate")
    with pytest.raises(MqttConfigError, match="ca.pem"):
        MqttLink(MqttOptions(tls=True, ca_certs=str(bad)), Topics(NODE), "test")


def test_wrong_password_is_logged_once_and_retried(secure_broker, caplog):
    caplog.set_level(logging.INFO, logger="snap_mqtt")
    before = secure_broker.connections_on(secure_broker.port)
    link = MqttLink(MqttOptions(host="127.0.0.1", port=secure_broker.port, username="snap",
                                password="not-the-password", reconnect_max_delay=1), Topics(NODE), "test")
    link.start()
    deadline = time.monotonic() + 15
    while secure_broker.connections_on(secure_broker.port) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    link.stop()
    assert secure_broker.connections_on(secure_broker.port) >= before + 3  # it keeps retrying
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1, refused  # one line per state change, not one per retry
    assert "mqtt.password" in refused[0]
    assert "not-the-password" not in caplog.text


def test_outbox_is_bounded_and_drops_stale_events(broker):
    """While the broker is out of reach, events wait in a bounded outbox; on connect the young ones
    go out in order, the ones older than max_event_age and the overflow are dropped and counted."""
    age = 8.0  # long enough for a reconnect on a busy machine
    proxy = Proxy(broker.port)  # blocked: the link cannot reach the broker yet
    rec = Recorder(broker.port, [f"{T}/snap"])
    link = MqttLink(MqttOptions(host="127.0.0.1", port=proxy.port, reconnect_max_delay=1), Topics(NODE), "test",
                    max_event_age=age, outbox_size=4)
    link.start()
    try:
        for n in range(6):
            link.publish_event(f"{T}/snap", {"n": n})
        assert link.stats.dropped_overflow == 2  # n=0 and n=1 pushed out by the bound
        proxy.unblock()
        rec.wait_for(lambda ms: len(ms) >= 4 or None, 15, "the queued events")
        time.sleep(0.3)
        assert [m.json()["n"] for m in rec.snapshot()] == [2, 3, 4, 5]

        # cut again: a stale event is dropped at reconnect, a young one sent
        proxy.block()
        deadline = time.monotonic() + 10
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        link.publish_event(f"{T}/snap", {"n": 6}, created=time.monotonic() - age - 1)
        link.publish_event(f"{T}/snap", {"n": 7})
        proxy.unblock()
        rec.wait_for(lambda ms: len(ms) >= 5 or None, 15, "the young event")
        time.sleep(0.5)
        assert [m.json()["n"] for m in rec.snapshot()] == [2, 3, 4, 5, 7]
        assert link.stats.dropped_stale == 1
    finally:
        link.stop()
        proxy.block()
        rec.close()
