"""snap-mqtt: hear finger snaps, count them, publish them to MQTT / Home Assistant."""

__version__ = "0.1.0"
