"""End to end with a real Home Assistant 2024.3.3 (its own process and virtual environment, see
tests/ha.py and scripts/setup-ha.sh), a real Mosquitto and the listener as a real process
replaying the demo recording (`listen --input`) with the shipped model:

- MQTT discovery creates one device with the gesture and snap event entities, the pause switch,
  the sensitivity number and three device triggers; a clean stop makes the entities unavailable;
- HA receives every gesture and snap the listener publishes while replaying the demo, in order;
  an automation on the device trigger "double press" (created through HA's config API, as the UI
  does) toggles an input_boolean exactly once: on the demo's double, not its single or triple;
- the pause switch, turned on through HA while the listener runs, stops all events; turned off,
  events flow again; the sensitivity number set in HA reaches the listener; SIGTERM makes the
  entities unavailable, and so does kill -9 (through the MQTT will).

Home Assistant starts once for the module. Without HA installed the test fails (not skips)."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf

from ha import BOOLEAN, HomeAssistant, HomeAssistantError, StateRecorder, hass_executable, wait_until
from listener_support import DEMO, DEMO_TRUTH, ListenerProc, Recorder
from services import Broker
from snap_mqtt.events import GESTURE_TYPES

pytestmark = [pytest.mark.ha, pytest.mark.slow]

NODE = "hatest"
T = f"snap_mqtt/{NODE}"
GONE = ("unavailable", "unknown")


# ---- fixtures: broker, Home Assistant, the recordings -----------------------------------------------------
@pytest.fixture(scope="module")
def mqtt_broker():
    b = Broker.create().start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def ha(mqtt_broker, tmp_path_factory):
    problem = None
    try:
        hass_executable()
        h = HomeAssistant.create(tmp_path_factory.mktemp("ha") / "config", mqtt_broker.port)
        t0 = time.monotonic()
        h.start()
    except HomeAssistantError as exc:
        problem = str(exc)
    if problem:  # outside the except: the message alone, no chained traceback
        pytest.fail(problem, pytrace=False)
    print(f"\nHome Assistant up (onboarded, MQTT loaded) in {time.monotonic() - t0:.1f} s")
    yield h
    h.stop()


@pytest.fixture(scope="module")
def states(ha):
    """Every state change in HA from here on (websocket subscription)."""
    r = StateRecorder(ha).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Unedited stretches of the demo recording (same rate, no joins): `quiet` holds no snap,
    `double` its double snap 5 s in, `triple` its triple snap 5 s in."""
    audio, rate = sf.read(str(DEMO), dtype="float32")
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for name, (a, b) in {"quiet": (3.0, 6.0), "double": (3.0, 10.0), "triple": (10.0, 21.0)}.items():
        out[name] = folder / f"{name}.flac"
        sf.write(str(out[name]), audio[int(a * rate):int(b * rate)], rate)
    return out


def listen(workdir: Path, broker: Broker, audio: Path, *args: str) -> ListenerProc:
    """The listener, configured the way a user would: environment variables."""
    env = {"SNAP_MQTT__HOST": "127.0.0.1", "SNAP_MQTT__PORT": str(broker.port), "SNAP_NODE_ID": NODE}
    return ListenerProc(["--input", str(audio), *args], workdir, env=env)


@dataclass
class Device:
    device: dict
    entities: dict[str, str]  # gesture / snap / pause / sensitivity -> entity_id
    triggers: list[dict]

    @property
    def id(self) -> str:
        return self.device["id"]


def find_device(ha: HomeAssistant) -> Device | None:
    ws = ha.websocket()
    try:
        ident = ["mqtt", f"snap_mqtt_{NODE}"]
        device = next((d for d in ws.call("config/device_registry/list") if ident in d["identifiers"]), None)
        if device is None:
            return None
        prefix = f"snap_mqtt_{NODE}_"
        entities = {e["unique_id"][len(prefix):]: e["entity_id"] for e in ws.call("config/entity_registry/list")
                    if e.get("device_id") == device["id"] and e["unique_id"].startswith(prefix)}
        triggers = [t for t in ws.call("device_automation/trigger/list", device_id=device["id"])
                    if t["domain"] == "mqtt"]
    finally:
        ws.close()
    if len(entities) < 4 or len(triggers) < 3:
        return None
    return Device(device, entities, triggers)


@pytest.fixture(scope="module")
def device(ha, mqtt_broker, clips, tmp_path_factory) -> Device:
    """The listener run once on a stretch without snaps: its discovery messages (retained) make
    HA create the device; the replay ends and the listener stops cleanly."""
    work = tmp_path_factory.mktemp("discovery")
    proc = listen(work, mqtt_broker, clips["quiet"], "--speed", "0")
    try:
        assert proc.wait(60) == 0, proc.log
    finally:
        proc.stop()
    return wait_until(lambda: find_device(ha), 30, "the snap-mqtt device, its 4 entities and 3 triggers in HA")


def events_of(states: StateRecorder, entity_id: str, since: float = 0.0) -> list[dict]:
    """Events an event entity received: state changes to a new timestamp while available (a change
    out of `unavailable` only restores the last event)."""
    return [c for c in states.of(entity_id, since) if c["new"] and c["new"]["state"] not in GONE
            and (c["old"] is None or c["old"]["state"] not in ("unavailable",))]


def came_online(states: StateRecorder, entity_id: str, since: float) -> list[dict]:
    return [c for c in states.of(entity_id, since)
            if c["old"] and c["old"]["state"] == "unavailable" and c["new"]["state"] != "unavailable"]


def wait_state(ha: HomeAssistant, entity_id: str, wanted: str, timeout: float = 15.0) -> dict:
    return wait_until(lambda: (s := ha.state(entity_id)) and s["state"] == wanted and s, timeout,
                      lambda: f"{entity_id} to be {wanted!r} (it is {(ha.state(entity_id) or {}).get('state')!r})")


# ---- the tests ------------------------------------------------------------------------------------------
def test_discovery_creates_the_device_entities_and_triggers(ha, device):
    d = device.device
    assert d["manufacturer"] == "snap-mqtt"
    assert d["name"] and NODE in d["name"]
    assert d["sw_version"] and d["model"]
    e = device.entities
    print(f"\ndevice {d['name']!r}: {sorted(e.values())}")
    assert set(e) == {"gesture", "snap", "pause", "sensitivity"}, e
    assert e["gesture"].startswith("event.") and e["snap"].startswith("event.")
    assert e["pause"].startswith("switch.") and e["sensitivity"].startswith("number.")
    gesture = ha.state(e["gesture"])
    assert gesture["attributes"]["event_types"] == ["single_snap", "double_snap", "triple_snap"]
    assert ha.state(e["snap"])["attributes"]["event_types"] == ["snap"]
    number = ha.state(e["sensitivity"])["attributes"]
    assert 0 < number["min"] < number["max"] < 1
    assert {(t["type"], t["subtype"]) for t in device.triggers} == {
        ("button_short_press", "snap"), ("button_double_press", "snap"), ("button_triple_press", "snap")}
    # the listener has stopped cleanly ("offline" retained): every entity is unavailable
    for entity_id in e.values():
        wait_state(ha, entity_id, "unavailable")


def test_double_snap_fires_a_device_trigger_automation_once(ha, device, states, mqtt_broker, tmp_path):
    trigger = next(t for t in device.triggers if t["type"] == "button_double_press")
    trigger = {k: v for k, v in trigger.items() if k != "metadata"}
    ha.save_automation("snap_double_toggle", {
        "id": "snap_double_toggle", "alias": "Double snap toggles the test boolean", "description": "",
        "mode": "queued", "trigger": [trigger], "condition": [],
        "action": [{"service": "input_boolean.toggle", "target": {"entity_id": BOOLEAN}}],
    })
    auto = wait_until(lambda: next((s for s in ha.api("GET", "/api/states")
                                    if s["attributes"].get("id") == "snap_double_toggle"
                                    and s["state"] == "on"), None), 20, "the automation to be loaded and on")
    assert ha.state(BOOLEAN)["state"] == "off"

    rec = Recorder(mqtt_broker.port, [f"{T}/snap", f"{T}/gesture"], client_id="ha-test-demo")
    since = time.monotonic()
    proc = listen(tmp_path, mqtt_broker, DEMO)  # real time, as a microphone would deliver it
    try:
        online = wait_until(lambda: came_online(states, device.entities["gesture"], since), 30,
                            "the gesture entity to come online")
        assert proc.wait(DEMO_TRUTH["seconds"] + 30) == 0, proc.log
    finally:
        proc.stop()
        time.sleep(0.5)
        rec.close()
    published = [m.json() for m in rec.on(f"{T}/gesture")]
    published_snaps = rec.on(f"{T}/snap")
    # Home Assistant got every gesture and snap the listener published, in order
    wait_until(lambda: len(events_of(states, device.entities["gesture"], since)) >= len(published) and
               len(events_of(states, device.entities["snap"], since)) >= len(published_snaps), 10,
               lambda: f"{len(published)} gestures and {len(published_snaps)} snaps in HA")
    time.sleep(1.0)  # anything extra (a wrong gesture, a second toggle) would arrive by now
    gestures = events_of(states, device.entities["gesture"], since)
    seen = [(g["new"]["attributes"]["event_type"], g["new"]["attributes"]["time"]) for g in gestures]
    assert seen == [(p["event_type"], p["time"]) for p in published], (seen, published)
    assert len(events_of(states, device.entities["snap"], since)) == len(published_snaps)

    # the demo's single, double and triple all came through (0.25 s: which gesture, not onset accuracy),
    # and exactly one double
    for truth in DEMO_TRUTH["gestures"]:
        assert any(p["count"] == truth["count"] and abs(p["time"] - truth["time"]) < 0.25 for p in published), \
            f"the demo's {GESTURE_TYPES[truth['count']]} at {truth['time']} s was not published: {published}"
    kinds = [p["event_type"] for p in published]
    assert kinds.count("double_snap") == 1, f"the demo holds one double snap; the listener published {kinds}"

    # ... so the automation toggled the boolean exactly once: on the double, not the single or triple
    flips = [c for c in states.of(BOOLEAN, since) if c["old"]["state"] != c["new"]["state"]]
    assert [(c["old"]["state"], c["new"]["state"]) for c in flips] == [("off", "on")], \
        f"the boolean should flip exactly once, on the double snap: {flips}"
    k = kinds.index("double_snap")
    double = gestures[k]
    assert double["received"] <= flips[0]["received"]
    assert k + 1 == len(gestures) or flips[0]["received"] <= gestures[k + 1]["received"]
    assert ha.state(auto["entity_id"])["attributes"]["last_triggered"]
    # the double's second snap is heard at 8.35 s of audio; the automation waits out the gesture gap
    second = DEMO_TRUTH["snaps"][2]
    print(f"\ndouble snap -> input_boolean on: {flips[0]['received'] - online[0]['received'] - second:.2f} s after "
          f"the second snap (gap 0.6 s included); the flip reached the test "
          f"{flips[0]['received'] - double['received']:.3f} s after the double_snap event")

    # a clean stop at the end of the recording: unavailable again
    for entity_id in device.entities.values():
        wait_state(ha, entity_id, "unavailable")


def test_pause_switch_stops_events_and_resumes_them(ha, device, states, mqtt_broker, clips, tmp_path):
    e = device.entities
    rec = Recorder(mqtt_broker.port, [f"{T}/snap", f"{T}/gesture"], client_id="ha-test-events")
    try:
        # the stretch with the double snap 5 s in: pause as soon as the listener is up
        since = time.monotonic()
        proc = listen(tmp_path, mqtt_broker, clips["double"])
        try:
            wait_state(ha, e["pause"], "off", timeout=30)
            up = time.monotonic()
            ha.call_service("switch", "turn_on", {"entity_id": e["pause"]})
            # "on" comes back on the listener's state topic: the listener itself has paused
            wait_state(ha, e["pause"], "on", timeout=5)
            acked = time.monotonic() - up
            assert proc.wait(30) == 0, proc.log
        finally:
            proc.stop()
        assert acked < 4.0, f"pause took {acked:.1f} s, longer than the 5 s before the snaps"
        assert "detection paused" in proc.log
        assert rec.snapshot() == [], [m.payload for m in rec.snapshot()]
        assert events_of(states, e["gesture"], since) == [] and events_of(states, e["snap"], since) == []
        assert ha.state(BOOLEAN)["state"] == "on"  # still the one flip of the previous test

        # the stretch with the triple snap 5 s in: the listener starts paused (restored from its
        # retained state); turn the switch off and the triple comes through
        since = time.monotonic()
        proc = listen(tmp_path, mqtt_broker, clips["triple"])
        try:
            wait_until(lambda: [c for c in came_online(states, e["pause"], since) if c["new"]["state"] == "on"], 30,
                       "the pause switch to come back, on")
            ha.call_service("switch", "turn_off", {"entity_id": e["pause"]})
            wait_state(ha, e["pause"], "off", timeout=5)
            gesture = wait_until(lambda: events_of(states, e["gesture"], since), 15, "the triple snap in HA")
            assert gesture[0]["new"]["attributes"]["event_type"] == "triple_snap"
            first = rec.wait_for(lambda ms: [m for m in ms if m.topic == f"{T}/gesture"], 5, "the gesture on MQTT")
            assert first[0].json()["event_type"] == "triple_snap"

            # the sensitivity number: set in HA, confirmed by the listener on its state topic
            current = float(ha.state(e["sensitivity"])["state"])
            wanted = round(current + 0.05 if current < 0.9 else current - 0.05, 2)
            ha.call_service("number", "set_value", {"entity_id": e["sensitivity"], "value": wanted})
            wait_until(lambda: abs(float(ha.state(e["sensitivity"])["state"]) - wanted) < 1e-6, 5,
                       f"the sensitivity to become {wanted}")
            assert f"threshold set to {wanted:.2f}" in proc.log

            # SIGTERM while running: "offline", and every entity is unavailable
            assert proc.proc.poll() is None, "the replay ended before the stop could be tested"
            proc.stop()
            assert proc.proc.returncode == 0, proc.log
        finally:
            proc.stop()
        for entity_id in e.values():
            wait_state(ha, entity_id, "unavailable", timeout=5)
    finally:
        rec.close()


def test_a_killed_listener_goes_unavailable_through_its_will(ha, device, states, mqtt_broker, clips, tmp_path):
    """kill -9 (a crash, a power cut): no clean "offline", the broker sends the will instead."""
    since = time.monotonic()
    proc = listen(tmp_path, mqtt_broker, clips["triple"])
    try:
        wait_until(lambda: came_online(states, device.entities["gesture"], since), 30,
                   "the gesture entity to come online")
        proc.signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.stop()
    assert "stopped:" not in proc.log  # it never ran its clean stop
    for entity_id in device.entities.values():
        wait_state(ha, entity_id, "unavailable", timeout=10)
