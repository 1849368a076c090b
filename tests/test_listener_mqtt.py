"""`snap-mqtt listen` as a real process against a real Mosquitto: events, discovery, availability,
clean stop and the will, Home Assistant restarts, the pause switch and the sensitivity number.

The stand-in models in listener_support are real TorchScript model files with a transparent rule,
so these tests pin the listener's behaviour, not the trained model's accuracy; the demo-scene test
uses the shipped model, as the README's demo does."""

from __future__ import annotations

import json
import signal
import time


from listener_support import (DEMO, DEMO_TRUTH, ListenerProc, Recorder, close_to, event_times,
                              make_energy_model, make_scaled_model, make_scene, retained)
from snap_mqtt.model_file import default_model_path

NODE = "testnode"
T = f"snap_mqtt/{NODE}"
CONFIG_TOPICS = {
    f"homeassistant/event/{NODE}/gesture/config", f"homeassistant/event/{NODE}/snap/config",
    f"homeassistant/device_automation/{NODE}/single_snap/config",
    f"homeassistant/device_automation/{NODE}/double_snap/config",
    f"homeassistant/device_automation/{NODE}/triple_snap/config",
    f"homeassistant/switch/{NODE}/pause/config", f"homeassistant/number/{NODE}/sensitivity/config",
}
SCENE_SNAPS = [1.0, 3.0, 3.3, 5.0, 5.25, 5.55]  # a single, a double, a triple


def listen(tmp_path, broker, *args: str) -> ListenerProc:
    return ListenerProc(["--port", str(broker.port), "--host", "127.0.0.1", "--node-id", NODE, *args], tmp_path)


def test_replay_publishes_snaps_gestures_discovery_then_offline(tmp_path, broker):
    # 44.1 kHz stereo: the replay goes through the same downmix and resampling as a microphone
    scene = make_scene(tmp_path / "scene.flac", SCENE_SNAPS, 7.0, rate=44100, channels=2)
    model = make_energy_model(tmp_path / "energy.pt")
    rec = Recorder(broker.port, [f"{T}/#", "homeassistant/#"])
    proc = listen(tmp_path, broker, "--input", str(scene), "--speed", "0", "--model", str(model))
    assert proc.wait(60) == 0, proc.log
    rec.wait_payload(f"{T}/availability", "offline", timeout=5)
    rec.close()

    snaps = rec.on(f"{T}/snap")
    assert close_to(event_times(snaps), SCENE_SNAPS), event_times(snaps)
    assert [m.json()["index"] for m in snaps] == [1, 1, 2, 1, 2, 3]
    for m in snaps:
        p = m.json()
        assert set(p) == {"event_type", "index", "confidence", "time", "timestamp"}
        assert p["event_type"] == "snap" and 0.5 <= p["confidence"] <= 1.0 and "T" in p["timestamp"]
        assert not m.retain
    gestures = [m.json() for m in rec.on(f"{T}/gesture")]
    assert [(g["event_type"], g["count"]) for g in gestures] == [("single_snap", 1), ("double_snap", 2),
                                                                 ("triple_snap", 3)]
    assert close_to([g["time"] for g in gestures], [1.0, 3.0, 5.0])
    # a gesture is sent after its last snap
    assert rec.on(f"{T}/gesture")[1].at >= snaps[2].at

    avail = [m.payload for m in rec.on(f"{T}/availability")]
    # online while running, offline at the end; a listener whose broker connection comes up before
    # its audio input says offline first (availability needs both), so the first may be either
    assert avail[-1] == "offline" and "online" in avail[:-1], avail
    assert set(avail) == {"online", "offline"} and avail[avail.index("online"):].count("online") == 1, avail
    # discovery and availability are retained: a newcomer (Home Assistant starting later) gets them
    kept = retained(broker.port, ["homeassistant/#", f"{T}/#"])
    assert CONFIG_TOPICS <= set(kept)
    assert kept[f"{T}/availability"] == "offline"
    assert json.loads(kept[f"homeassistant/event/{NODE}/gesture/config"])["state_topic"] == f"{T}/gesture"
    assert f"{T}/snap" not in kept and f"{T}/gesture" not in kept  # events are never retained


def test_demo_scene_with_the_shipped_model(tmp_path, broker):
    """The README's demo: the shipped model on demo/demo-scene.flac publishes the single, the
    double and the triple at their known times (event tolerance 0.15 s, well under the snaps'
    0.3 s spacing), and exactly the events the same pipeline finds offline: nothing lost, added or
    re-timed between the detector and the broker. (Onset precision is tests/test_detect_cli.py's.)"""
    from snap_mqtt.audio_io import read_audio
    from snap_mqtt.events import SnapEvent
    from snap_mqtt.model_file import load_model
    from snap_mqtt.pipeline import SnapPipeline

    assert default_model_path().is_file(), "models/snap-default.pt is missing"
    rec = Recorder(broker.port, [f"{T}/#"])
    proc = listen(tmp_path, broker, "--input", str(DEMO), "--speed", "0")
    assert proc.wait(90) == 0, proc.log
    rec.wait_payload(f"{T}/availability", "offline", timeout=5)
    rec.close()
    snaps = event_times(rec.on(f"{T}/snap"))
    # the listener's log and every message heard, should it ever differ (once seen under heavy load)
    why = (snaps, [(m.topic, m.payload[:80]) for m in rec.messages], proc.log[-4000:])
    assert close_to(snaps, DEMO_TRUTH["snaps"], tol=0.15), why
    gestures = [m.json() for m in rec.on(f"{T}/gesture")]
    assert [g["count"] for g in gestures] == [g["count"] for g in DEMO_TRUTH["gestures"]]
    assert close_to([g["time"] for g in gestures], [g["time"] for g in DEMO_TRUTH["gestures"]], tol=0.15)

    audio = read_audio(DEMO)
    pipe = SnapPipeline(load_model(default_model_path()), None, audio.sample_rate, 1)
    offline = pipe.process(audio.samples) + pipe.flush()
    assert snaps == [round(e.time, 4) for e in offline if isinstance(e, SnapEvent)]
    assert [g["time"] for g in gestures] == [round(e.time, 4) for e in offline if not isinstance(e, SnapEvent)]


def test_ha_restart_pause_switch_sensitivity_and_clean_stop(tmp_path, broker):
    # a single snap every 2 s; the stand-in model answers ~0.7 for a snap: heard at threshold 0.5,
    # not at 0.8
    snaps = [2.0 * k for k in range(1, 30)]
    scene = make_scene(tmp_path / "scene.flac", snaps, 60.0)
    model = make_scaled_model(tmp_path / "scaled.pt", gain=0.7)
    rec = Recorder(broker.port, [f"{T}/#", "homeassistant/#"])
    proc = listen(tmp_path, broker, "--input", str(scene), "--speed", "2", "--model", str(model))
    try:
        rec.wait_payload(f"{T}/availability", "online", timeout=60)
        rec.wait_payload(f"{T}/pause/state", "OFF")
        rec.wait_payload(f"{T}/sensitivity/state", "0.50")

        # Home Assistant restarts: discovery (and the control state) are sent again
        t0 = time.monotonic()
        rec.publish("homeassistant/status", "online")
        rec.wait_for(lambda ms: CONFIG_TOPICS <= {m.topic for m in ms if m.at >= t0} or None, 10,
                     "discovery re-published")

        rec.wait_for(lambda ms: rec.on(f"{T}/snap"), 10, "a first snap")
        # pause: nothing leaves while paused (3 s = 3 snaps at double speed)
        rec.publish(f"{T}/pause/set", "ON")
        paused_at = rec.wait_payload(f"{T}/pause/state", "ON", since=t0).at
        time.sleep(3.0)
        assert rec.on(f"{T}/snap", since=paused_at + 0.2) == []
        assert rec.on(f"{T}/gesture", since=paused_at + 0.2) == []
        rec.publish(f"{T}/pause/set", "OFF")
        resumed_at = rec.wait_payload(f"{T}/pause/state", "OFF", since=paused_at).at
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=resumed_at), 5, "a snap after resuming")

        # sensitivity: at threshold 0.8 the ~0.7 snaps are not events any more; back at 0.5 they are
        rec.publish(f"{T}/sensitivity/set", "0.8")
        raised_at = rec.wait_payload(f"{T}/sensitivity/state", "0.80").at
        time.sleep(3.0)
        assert rec.on(f"{T}/snap", since=raised_at + 0.2) == []
        rec.publish(f"{T}/sensitivity/set", "0.5")
        lowered_at = rec.wait_payload(f"{T}/sensitivity/state", "0.50", since=raised_at).at
        rec.wait_for(lambda ms: rec.on(f"{T}/snap", since=lowered_at), 5, "a snap at threshold 0.5")
        # a bad command is ignored and logged, the listener goes on
        rec.publish(f"{T}/sensitivity/set", "loud")

        # SIGTERM: offline published, exit 0 within 2 s
        stop_at = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(2.0) == 0, proc.log
        assert time.monotonic() - stop_at < 2.0
        rec.wait_payload(f"{T}/availability", "offline", since=stop_at, timeout=2)
        assert "ignoring threshold payload" in proc.log
    finally:
        proc.stop()
        rec.close()
    kept = retained(broker.port, [f"{T}/#"])
    assert kept[f"{T}/availability"] == "offline"
    assert (kept[f"{T}/pause/state"], kept[f"{T}/sensitivity/state"]) == ("OFF", "0.50")


def test_restored_pause_state_and_the_will_on_kill(tmp_path, broker):
    """The pause switch's retained state is restored at start (a paused listener stays quiet
    after a restart), and `kill -9` leaves `offline` through the will."""
    scene = make_scene(tmp_path / "scene.flac", [1.0 + 1.0 * k for k in range(20)], 22.0)
    model = make_energy_model(tmp_path / "energy.pt")
    rec = Recorder(broker.port, [f"{T}/#"])
    rec.publish(f"{T}/pause/state", "ON", retain=True)
    rec.publish(f"{T}/sensitivity/state", "0.60", retain=True)
    proc = listen(tmp_path, broker, "--input", str(scene), "--speed", "2", "--model", str(model))
    try:
        online = rec.wait_payload(f"{T}/availability", "online", timeout=60).at
        time.sleep(3.0)  # 6 s of audio: 5 snaps
        assert rec.on(f"{T}/snap") == [] and rec.on(f"{T}/gesture") == []
        assert "restored pause state ON" in proc.log and "restored threshold 0.60" in proc.log
        proc.signal(signal.SIGKILL)
        proc.wait(5)
        rec.wait_payload(f"{T}/availability", "offline", since=online, timeout=10)
    finally:
        proc.stop()
        rec.close()


def test_demo_script_runs_the_main_job(tmp_path):
    """scripts/demo.sh on a machine without a configured broker: starts its own Mosquitto, replays
    the demo recording through `listen --input`, shows the messages, ends with the recording and
    leaves no broker behind."""
    import os
    import re
    import socket
    import subprocess

    model = make_energy_model(tmp_path / "energy.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAP_")}
    env.update(SNAP_MODEL_PATH=str(model), SNAP_NODE_ID="demo", OMP_NUM_THREADS="1")
    root = DEMO.parent.parent
    r = subprocess.run(["scripts/demo.sh", "--file", "--speed", "0"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    m = re.search(r"local Mosquitto on 127\.0\.0\.1:(\d+)", out)
    assert m, out[-2000:]
    assert "mqtt> snap_mqtt/demo/availability online" in out
    assert re.search(r"mqtt> snap_mqtt/demo/gesture \{\"event_type\": \"(single|double|triple)_snap\"", out)
    assert "mqtt> snap_mqtt/demo/availability offline" in out
    with socket.socket() as s:  # the demo's broker is gone
        assert s.connect_ex(("127.0.0.1", int(m.group(1)))) != 0


def test_restart_restores_a_chosen_threshold_but_not_an_old_model_default(broker):
    """The retained sensitivity state says where it came from: a threshold set from Home Assistant
    survives a restart; a model's own default or a config value does not override today's."""
    from snap_mqtt.mqtt_client import MqttLink, MqttOptions
    from snap_mqtt.topics import Topics

    def run_link(threshold: float, source: str) -> list[float]:
        restored: list[float] = []
        link = MqttLink(MqttOptions(host="127.0.0.1", port=broker.port), Topics(NODE), "test",
                        on_threshold=restored.append, controls=lambda: (False, threshold, source))
        link.start()
        deadline = time.monotonic() + 10
        while not link._restore_done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the state publish after the restore
        link.stop()
        return restored

    assert run_link(0.5, "model") == []  # first start: nothing retained yet
    assert run_link(0.8, "model") == []  # a new model's 0.80 wins over the old default 0.50
    assert run_link(0.6, "config") == []  # so does a configured value; it is retained as such
    assert run_link(0.7, "model") == []  # ... and not restored either
    assert run_link(0.4, "user") == []  # a choice made in Home Assistant is retained ...
    assert run_link(0.3, "model") == [0.4]  # ... and restored at the next start
