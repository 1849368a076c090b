"""snap-train: record, label, train, evaluate, enroll and export snap-mqtt models."""

from snap_mqtt import __version__

__all__ = ["__version__"]
