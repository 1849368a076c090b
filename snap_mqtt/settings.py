"""Settings of the listener and the detector: one pydantic-settings model.

Precedence (highest first): command-line flags (`cli_overrides`), environment variables
(`SNAP_` prefix, `__` for nesting: `SNAP_MQTT__HOST`), a `.env` file in the working directory,
the YAML config file (`--config`), then the defaults below. Unknown keys are rejected everywhere;
every invalid value is reported on its own line naming the field (`SettingsError`). Secrets are
`SecretStr`: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from snap_mqtt.detector import BUSY_COUNT, BUSY_LEVEL, BUSY_SECONDS

ENV_PREFIX = "SNAP_"
ENV_NESTED_DELIMITER = "__"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TOPIC_RE = re.compile(r"^[^#+\s]+$")  # MQTT topic level(s) without wildcards or blanks


class SettingsError(Exception):
    """Invalid configuration. `problems` holds one `field.path: problem` line per bad value."""

    def __init__(self, problems: list[str], source: str = "configuration"):
        self.problems = problems
        self.source = source
        super().__init__(f"invalid {source}:\n" + "\n".join(f"  {p}" for p in problems))


def host_slug(hostname: str | None = None) -> str:
    """A node id from the host name: lower case, [a-z0-9_] only, never empty."""
    name = (hostname if hostname is not None else socket.gethostname()).split(".")[0].lower()
    slug = re.sub(r"[^a-z0-9_]+", "_", name).strip("_")
    return slug or "snap"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    username: str | None = Field(None, description="broker user name")
    password: SecretStr | None = Field(None, description="broker password (never logged)")
    client_id: str | None = Field(None, description="MQTT client id; default snap_mqtt_<node_id>")
    keepalive: int = Field(60, ge=5, le=3600, description="keepalive interval, seconds")
    tls: bool = Field(False, description="connect with TLS")
    tls_ca: Path | None = Field(None, description="CA certificate file (PEM); default: system CAs")
    tls_cert: Path | None = Field(None, description="client certificate file (PEM)")
    tls_key: Path | None = Field(None, description="client key file (PEM)")
    tls_insecure: bool = Field(False, description="skip the broker host name check (testing only)")
    reconnect_max_delay: float = Field(30.0, gt=0, le=3600,
                                       description="cap of the exponential reconnect backoff, seconds")

    @field_validator("tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _file_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"file not found: {v}")
        return Path(v).expanduser() if v is not None else None


class AudioSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: int | str | None = Field(None, description="input device name (or part of it) or index; "
                                                        "default: the system default input")
    sample_rate: int | None = Field(None, ge=8000, le=384000,
                                    description="capture rate; default: the model's rate if the device "
                                                "supports it, else the device's default rate")
    channels: int = Field(1, ge=1, le=32, description="capture channels (downmixed to mono)")
    block_seconds: float = Field(0.02, gt=0, le=1.0, description="capture block length, seconds")

    @field_validator("device")
    @classmethod
    def _device(cls, v: int | str | None) -> int | str | None:
        # "2" from the environment or a flag means device index 2; "" means the default device
        if isinstance(v, str):
            v = v.strip()
            return int(v) if v.isdigit() else (v or None)
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    model_path: Path | None = Field(None, description="model file; default: the shipped models/snap-default.pt")
    threshold: float | None = Field(None, gt=0, lt=1,
                                    description="snap probability threshold; default: the model's own")
    follow_threshold: float | None = Field(
        None, gt=0, lt=1, description="threshold for a snap within the gesture gap of a sure one (the 2nd and 3rd "
        "snap of a gesture); default: the model's own, else the same as threshold")
    hop_samples: int | None = Field(None, ge=1, description="inference hop in model samples; default: the model's")
    refractory: float = Field(0.15, gt=0, le=2.0,
                              description="minimum time between two snap onsets, seconds")
    gap: float = Field(0.6, gt=0, le=10.0, description="snaps closer than this form one gesture, seconds")
    max_count: int = Field(3, ge=1, le=10, description="a gesture closes at once when it reaches this many snaps")
    busy_seconds: float = Field(BUSY_SECONDS, ge=0, le=10.0,
                                description="busy guard: no gesture starts within this many seconds after busy_count "
                                "unreported snap-like sounds (music's snares and claps); 0 turns it off")
    busy_count: int = Field(BUSY_COUNT, ge=1, le=20, description="busy guard: near misses that make it busy")
    busy_level: float = Field(BUSY_LEVEL, gt=0, lt=1, description="busy guard: the probability a near miss reaches")
    max_event_age: float = Field(5.0, gt=0, le=3600,
                                 description="events older than this are dropped instead of sent late, seconds")
    node_id: str = Field(default_factory=host_slug, min_length=1, max_length=64,
                         description="this listener's id in topics and Home Assistant; default: host name slug")
    base_topic: str = Field("snap_mqtt", min_length=1, description="MQTT base topic")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant discovery prefix")
    capture_dir: Path | None = Field(None, description="opt-in: save the audio around each detection here")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use letters, digits, '_' and '-' only")
        return v

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        v = v.strip("/")
        if not v or not _TOPIC_RE.match(v):
            raise ValueError("must be an MQTT topic without wildcards (#, +) or spaces")
        return v

    @field_validator("model_path", "capture_dir")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return Path(v).expanduser() if v is not None else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _PrefixedDotEnv(settings_cls, dotenv_settings),
                _YamlSource(settings_cls))

    # -- derived values ---------------------------------------------------------------------------
    def resolved_model_path(self) -> Path:
        from snap_mqtt.model_file import default_model_path  # torch import only when needed

        return self.model_path if self.model_path is not None else default_model_path()

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"snap_mqtt_{self.node_id}"

    @property
    def node_topic(self) -> str:
        return f"{self.base_topic}/{self.node_id}"

    def redacted(self) -> dict[str, Any]:
        """A dict safe to print or log: the password shown as '***' when set."""
        d = self.model_dump(mode="json")
        if self.mqtt.password is not None:
            d["mqtt"]["password"] = "***"
        return d

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, config_path: str | os.PathLike[str] | None = None,
             cli_overrides: dict[str, Any] | None = None, env_file: str | os.PathLike[str] | None = ".env",
             ) -> "Settings":
        """Settings from flags > environment > .env > YAML file > defaults, or SettingsError.

        `cli_overrides` may be nested ({"mqtt": {"host": ...}}) or use dotted keys ("mqtt.host");
        None values (flags not given) are ignored."""
        yaml_data = _read_yaml(Path(config_path)) if config_path is not None else {}
        overrides = _nest(_drop_none(cli_overrides or {}))
        token = _YAML_DATA.set(yaml_data)
        try:
            return cls(_env_file=env_file, **overrides)
        except ValidationError as exc:
            src = "configuration" if config_path is None else f"configuration ({config_path} + environment + flags)"
            raise SettingsError(validation_problems(exc), source=src) from None
        finally:
            _YAML_DATA.reset(token)


# The YAML data for the Settings being built (set by Settings.load; a context variable, so two
# threads loading different files do not see each other's).
_YAML_DATA: ContextVar[dict[str, Any]] = ContextVar("snap_yaml_data", default={})


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _YAML_DATA.get()
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_YAML_DATA.get())


class _PrefixedDotEnv(PydanticBaseSettingsSource):
    """The .env file, minus lines that are not ours: a .env is often shared (docker compose),
    so only SNAP_* names count, and an unknown SNAP_* name is an error, not silently ignored."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        out: dict[str, Any] = {}
        for k, v in self.inner().items():
            if k in self.settings_cls.model_fields:
                out[k] = v
            elif k.lower().startswith(prefix):
                out[k[len(prefix):]] = v  # reported as an unknown setting by name
        return out


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise SettingsError([f"{path}: config file not found"], source="configuration")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).replace("\n", " ")
        raise SettingsError([f"{path}: not valid YAML ({first})"], source="configuration") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError([f"{path}: the top level must be a mapping of settings, not {type(data).__name__}"],
                            source="configuration")
    # YAML files often spell keys with dashes (max-count): accept both, as the flags do
    return _normalise_keys(data)


def _normalise_keys(d: Any) -> Any:
    if isinstance(d, dict):
        return {(k.replace("-", "_") if isinstance(k, str) else k): _normalise_keys(v) for k, v in d.items()}
    return d


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


def _nest(d: dict[str, Any]) -> dict[str, Any]:
    """{"mqtt.host": h} -> {"mqtt": {"host": h}}, merged with any nested dicts already there."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        parts = k.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        if isinstance(v, dict) and isinstance(cur.get(parts[-1]), dict):
            cur[parts[-1]].update(v)
        else:
            cur[parts[-1]] = v
    return out


_SECRET_FIELDS = {"password"}


def _field_loc(loc: tuple, model: Any) -> tuple:
    """The error's location cut at the field: a union field (audio.device: int | str) reports one
    error per member with the member's tag appended ('audio.device.int'); drop such tags."""
    out = []
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            break
        out.append(part)
        model = fields[part].annotation
    return tuple(out)


def validation_problems(exc: ValidationError, model: Any = None) -> list[str]:
    """One `field.path: problem (got value)` line per bad field; secret values are never shown."""
    model = model if model is not None else Settings
    by_loc: dict[str, list[str]] = {}
    got_by_loc: dict[str, str] = {}
    for err in exc.errors():
        loc_t = tuple(err["loc"]) if err["type"] == "extra_forbidden" else (_field_loc(tuple(err["loc"]), model)
                                                                           or tuple(err["loc"]))
        loc = ".".join(str(p) for p in loc_t) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        got = ""
        if err["type"] != "missing" and not (_SECRET_FIELDS & {str(p) for p in err["loc"]}):
            val = err.get("input")
            if not isinstance(val, dict):
                got = f" (got {val!r})"
        if msg not in by_loc.setdefault(loc, []):
            by_loc[loc].append(msg)
        got_by_loc.setdefault(loc, got)
    return [f"{loc}: {'; '.join(msgs)}{got_by_loc[loc]}" for loc, msgs in by_loc.items()]


def env_name(field_path: str) -> str:
    """'mqtt.host' -> 'SNAP_MQTT__HOST'."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(field_path.upper().split("."))


# -- shared command-line flags (listen, detect, check) ------------------------------------------------

def add_common_arguments(parser: argparse.ArgumentParser, mqtt: bool = False) -> None:
    """Flags that map one-to-one onto settings; a flag given beats env, .env and YAML."""
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see config.example.yaml)")
    parser.add_argument("--model", metavar="FILE", dest="model_path", help="model file (default: the shipped model)")
    parser.add_argument("--threshold", type=float, help="snap probability threshold (default: the model's)")
    parser.add_argument("--refractory", type=float, help="minimum seconds between two snap onsets (0.15)")
    parser.add_argument("--gap", type=float, help="snaps closer than this many seconds form one gesture (0.6)")
    parser.add_argument("--max-count", type=int, dest="max_count", help="most snaps in one gesture (3)")
    if mqtt:
        parser.add_argument("--node-id", dest="node_id", help="node id (default: host name slug)")
        parser.add_argument("--host", dest="mqtt.host", help="MQTT broker host (localhost)")
        parser.add_argument("--port", type=int, dest="mqtt.port", help="MQTT broker port (1883)")


_COMMON_KEYS = ("model_path", "threshold", "refractory", "gap", "max_count", "node_id", "mqtt.host", "mqtt.port")


def overrides_from_args(args: argparse.Namespace, extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings given as flags (dotted keys, None for flags not given)."""
    return {k: getattr(args, k, None) for k in (*_COMMON_KEYS, *extra_keys)}


def load_from_args(args: argparse.Namespace, extra_keys: tuple[str, ...] = ()) -> Settings:
    return Settings.load(getattr(args, "config", None), overrides_from_args(args, extra_keys))


__all__ = ["Settings", "MqttSettings", "AudioSettings", "SettingsError", "host_slug", "env_name",
           "add_common_arguments", "overrides_from_args", "load_from_args", "validation_problems"]
