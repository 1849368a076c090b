"""Home Assistant MQTT discovery payloads for one node (pure: no I/O).

Everything hangs off one device (`snap_mqtt_<node>`): two `event` entities (gestures, single
snaps), three device triggers (single/double/triple snap) and two controls (a pause `switch`
and a sensitivity `number` holding the detection threshold). Each has a `unique_id`; none sets
`object_id`, so Home Assistant derives entity ids from the device and entity names. All are
published retained and re-published whenever Home Assistant announces `online`.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_mqtt.events import GESTURE_TYPES
from snap_mqtt.topics import Topics

PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
PAYLOAD_ON = "ON"  # pause switch: ON = detection paused
PAYLOAD_OFF = "OFF"

# gesture event type -> Home Assistant device-trigger type
TRIGGER_TYPES = {
    "single_snap": "button_short_press",
    "double_snap": "button_double_press",
    "triple_snap": "button_triple_press",
}

# the sensitivity number is the detection threshold; outside this range a model is useless
THRESHOLD_MIN = 0.05
THRESHOLD_MAX = 0.95
THRESHOLD_STEP = 0.01


@dataclass(frozen=True)
class DiscoveryMessage:
    topic: str
    payload: dict


def device_info(topics: Topics, sw_version: str, model: str = "snap-mqtt listener") -> dict:
    return {
        "identifiers": [f"snap_mqtt_{topics.node_id}"],
        "name": f"Snap detector {topics.node_id}",
        "model": model,
        "sw_version": sw_version,
        "manufacturer": "snap-mqtt",
    }


def _uid(topics: Topics, what: str) -> str:
    return f"snap_mqtt_{topics.node_id}_{what}"


def discovery_messages(topics: Topics, sw_version: str, model: str = "snap-mqtt listener") -> list[DiscoveryMessage]:
    """All discovery config messages for this node, in a stable order."""
    device = device_info(topics, sw_version, model)
    availability = {
        "availability_topic": topics.availability,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
    }
    gesture_types = [GESTURE_TYPES[n] for n in sorted(GESTURE_TYPES)]
    out = [
        DiscoveryMessage(topics.discovery("event", "gesture"), {
            "name": "Snap gesture",
            "unique_id": _uid(topics, "gesture"),
            "state_topic": topics.gesture,
            "event_types": gesture_types,
            "device_class": "button",
            "icon": "mdi:gesture-tap",
            "qos": 1,
            **availability,
            "device": device,
        }),
        DiscoveryMessage(topics.discovery("event", "snap"), {
            "name": "Snap",
            "unique_id": _uid(topics, "snap"),
            "state_topic": topics.snap,
            "event_types": ["snap"],
            "device_class": "button",
            "icon": "mdi:hand-back-right",
            "qos": 1,
            **availability,
            "device": device,
        }),
    ]
    for event_type in gesture_types:
        out.append(DiscoveryMessage(topics.discovery("device_automation", event_type), {
            "automation_type": "trigger",
            "unique_id": _uid(topics, f"trigger_{event_type}"),
            "type": TRIGGER_TYPES[event_type],
            "subtype": "snap",
            "topic": topics.gesture,
            "value_template": "{{ value_json.event_type }}",
            "payload": event_type,
            "qos": 1,
            "device": device,
        }))
    out.append(DiscoveryMessage(topics.discovery("switch", "pause"), {
        "name": "Pause detection",
        "unique_id": _uid(topics, "pause"),
        "command_topic": topics.pause_command,
        "state_topic": topics.pause_state,
        "payload_on": PAYLOAD_ON,
        "payload_off": PAYLOAD_OFF,
        "state_on": PAYLOAD_ON,
        "state_off": PAYLOAD_OFF,
        "icon": "mdi:pause-circle",
        "entity_category": "config",
        "qos": 1,
        **availability,
        "device": device,
    }))
    out.append(DiscoveryMessage(topics.discovery("number", "sensitivity"), {
        "name": "Detection threshold",
        "unique_id": _uid(topics, "sensitivity"),
        "command_topic": topics.sensitivity_command,
        "state_topic": topics.sensitivity_state,
        "min": THRESHOLD_MIN,
        "max": THRESHOLD_MAX,
        "step": THRESHOLD_STEP,
        "mode": "slider",
        "icon": "mdi:tune-vertical",
        "entity_category": "config",
        "qos": 1,
        **availability,
        "device": device,
    }))
    return out


def parse_pause(payload: bytes | str) -> bool | None:
    """Pause command payload -> True (pause) / False (resume) / None (not understood)."""
    text = (payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload).strip().upper()
    return {PAYLOAD_ON: True, PAYLOAD_OFF: False, "TRUE": True, "FALSE": False, "1": True, "0": False}.get(text)


def parse_threshold(payload: bytes | str) -> float | None:
    """Sensitivity command payload -> threshold in [THRESHOLD_MIN, THRESHOLD_MAX], or None."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
        return None
    return value


def format_threshold(value: float) -> str:
    return f"{value:.2f}"
