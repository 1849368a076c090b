"""Home Assistant discovery payloads and topic names (pure functions): the contract of issue 3."""

from __future__ import annotations

import json

import pytest

from snap_mqtt import __version__
from snap_mqtt.discovery import (THRESHOLD_MAX, THRESHOLD_MIN, discovery_messages, parse_pause,
                                 parse_threshold)
from snap_mqtt.topics import Topics, slug


@pytest.fixture
def msgs():
    return {m.topic: m.payload for m in discovery_messages(Topics("kitchen"), __version__)}


def test_topics_follow_the_contract():
    t = Topics("kitchen")
    assert t.availability == "snap_mqtt/kitchen/availability"
    assert t.snap == "snap_mqtt/kitchen/snap"
    assert t.gesture == "snap_mqtt/kitchen/gesture"
    assert t.ha_status == "homeassistant/status"
    assert t.pause_command.startswith("snap_mqtt/kitchen/") and t.sensitivity_command.startswith("snap_mqtt/kitchen/")
    custom = Topics("n1", base_topic="home/snaps", discovery_prefix="ha")
    assert custom.gesture == "home/snaps/n1/gesture"
    assert custom.discovery("event", "gesture") == "ha/event/n1/gesture/config"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#"])
def test_bad_node_ids_are_rejected(bad):
    with pytest.raises(ValueError, match="node_id"):
        Topics(bad)


def test_slug_of_host_names():
    assert slug("Kitchen-Pi.local") == "kitchen-pi"
    assert slug("My Box") == "my_box"
    assert slug("...") == "snap"


def test_all_discovery_topics(msgs):
    assert set(msgs) == {
        "homeassistant/event/kitchen/gesture/config",
        "homeassistant/event/kitchen/snap/config",
        "homeassistant/device_automation/kitchen/single_snap/config",
        "homeassistant/device_automation/kitchen/double_snap/config",
        "homeassistant/device_automation/kitchen/triple_snap/config",
        "homeassistant/switch/kitchen/pause/config",
        "homeassistant/number/kitchen/sensitivity/config",
    }


def test_one_device_unique_ids_and_no_object_id(msgs):
    devices = {json.dumps(p["device"], sort_keys=True) for p in msgs.values()}
    assert len(devices) == 1
    device = next(iter(msgs.values()))["device"]
    assert device["identifiers"] == ["snap_mqtt_kitchen"]
    assert device["sw_version"] == __version__
    for key in ("name", "model", "manufacturer"):
        assert device[key]
    uids = [p["unique_id"] for p in msgs.values()]
    assert len(set(uids)) == len(uids) == 7
    assert all("object_id" not in p for p in msgs.values())
    # payloads must survive a JSON round trip unchanged (they are sent as JSON)
    assert all(json.loads(json.dumps(p)) == p for p in msgs.values())


def test_event_entities(msgs):
    g = msgs["homeassistant/event/kitchen/gesture/config"]
    assert g["state_topic"] == "snap_mqtt/kitchen/gesture"
    assert g["event_types"] == ["single_snap", "double_snap", "triple_snap"]
    assert g["availability_topic"] == "snap_mqtt/kitchen/availability"
    assert (g["payload_available"], g["payload_not_available"]) == ("online", "offline")
    s = msgs["homeassistant/event/kitchen/snap/config"]
    assert s["state_topic"] == "snap_mqtt/kitchen/snap"
    assert s["event_types"] == ["snap"]
    assert s["availability_topic"] == "snap_mqtt/kitchen/availability"


@pytest.mark.parametrize("event_type,trigger", [("single_snap", "button_short_press"),
                                                ("double_snap", "button_double_press"),
                                                ("triple_snap", "button_triple_press")])
def test_device_triggers(msgs, event_type, trigger):
    p = msgs[f"homeassistant/device_automation/kitchen/{event_type}/config"]
    assert p["automation_type"] == "trigger"
    assert p["type"] == trigger
    assert p["subtype"] == "snap"
    assert p["topic"] == "snap_mqtt/kitchen/gesture"
    assert p["value_template"] == "{{ value_json.event_type }}"
    assert p["payload"] == event_type


def test_controls(msgs):
    sw = msgs["homeassistant/switch/kitchen/pause/config"]
    num = msgs["homeassistant/number/kitchen/sensitivity/config"]
    for p in (sw, num):
        assert p["command_topic"].startswith("snap_mqtt/kitchen/")
        assert p["state_topic"].startswith("snap_mqtt/kitchen/")
        assert p["command_topic"] != p["state_topic"]
        assert p["availability_topic"] == "snap_mqtt/kitchen/availability"
    assert (sw["payload_on"], sw["payload_off"]) == ("ON", "OFF")
    assert 0 < num["min"] < num["max"] < 1 and num["step"] > 0


def test_command_parsing():
    assert parse_pause(b"ON") is True and parse_pause("off") is False and parse_pause(b"maybe") is None
    assert parse_threshold(b"0.7") == 0.7
    assert parse_threshold(str(THRESHOLD_MIN)) == THRESHOLD_MIN and parse_threshold(str(THRESHOLD_MAX)) == THRESHOLD_MAX
    for bad in (b"0", b"1.0", b"-0.3", b"abc", b"", b"nan"):
        assert parse_threshold(bad) is None
