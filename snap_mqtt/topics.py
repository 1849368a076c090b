"""MQTT topic names for one node (pure: no I/O). The contract is in docs/listener.md."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def slug(text: str) -> str:
    """A topic- and id-safe slug: lower case, [a-z0-9_-] only ('Kitchen Pi.local' -> 'kitchen_pi')."""
    s = _SLUG_BAD.sub("_", text.split(".")[0].strip().lower()).strip("_")
    return s or "snap"


def default_node_id() -> str:
    return slug(socket.gethostname())


def check_topic_part(name: str, value: str) -> str:
    """A base topic / node id / prefix must not contain MQTT wildcards or be empty."""
    if not value or any(c in value for c in "+#\0"):
        raise ValueError(f"{name} {value!r} must be non-empty and contain no '+', '#' or NUL")
    return value.strip("/")


@dataclass(frozen=True)
class Topics:
    node_id: str
    base_topic: str = "snap_mqtt"
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        check_topic_part("node_id", self.node_id)
        check_topic_part("base_topic", self.base_topic)
        check_topic_part("discovery_prefix", self.discovery_prefix)
        if "/" in self.node_id:
            raise ValueError(f"node_id {self.node_id!r} must not contain '/'")

    @property
    def root(self) -> str:
        return f"{self.base_topic.strip('/')}/{self.node_id}"

    @property
    def availability(self) -> str:
        return f"{self.root}/availability"

    @property
    def snap(self) -> str:
        return f"{self.root}/snap"

    @property
    def gesture(self) -> str:
        return f"{self.root}/gesture"

    # controls: a switch (pause) and a number (sensitivity = detection threshold)
    @property
    def pause_command(self) -> str:
        return f"{self.root}/pause/set"

    @property
    def pause_state(self) -> str:
        return f"{self.root}/pause/state"

    @property
    def sensitivity_command(self) -> str:
        return f"{self.root}/sensitivity/set"

    @property
    def sensitivity_state(self) -> str:
        return f"{self.root}/sensitivity/state"

    @property
    def ha_status(self) -> str:
        """Home Assistant announces `online` here when it (re)starts: re-send discovery then."""
        return f"{self.discovery_prefix.strip('/')}/status"

    def discovery(self, component: str, object_name: str) -> str:
        return f"{self.discovery_prefix.strip('/')}/{component}/{self.node_id}/{object_name}/config"
