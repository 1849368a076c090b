"""A real Home Assistant for the end-to-end test, run as its own process from its own virtual
environment (built by scripts/setup-ha.sh; HA pins paho-mqtt 1.6 and pydantic 1, so it cannot share
the project's .venv).

`HomeAssistant.create(broker_port)` writes a config dir: a minimal configuration.yaml (HTTP on a
free loopback port, the API, automations editable through the config API, one input_boolean) and
the MQTT integration's config entry for the test broker in `.storage/core.config_entries`, which
HA reads at its first start exactly as if a user had added the broker in the UI. `start()` runs
`hass -c DIR`, onboards a user (the onboarding API hands out an auth code, exchanged for a token)
and waits until the MQTT integration is loaded. REST and websocket helpers use only the standard
library, so the project's .venv needs nothing extra.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from services import free_port

HA_VERSION = "2024.3.3"
ROOT = Path(__file__).resolve().parent.parent
BOOLEAN = "input_boolean.snap_toggled"


class HomeAssistantError(RuntimeError):
    pass


class HassExited(RuntimeError):
    """hass ended while we waited for it: no point waiting on (wait_until does not catch it)."""


def ha_venv() -> Path:
    """Where scripts/setup-ha.sh puts Home Assistant's own virtual environment."""
    default = Path.home() / ".cache" / "snap-mqtt" / f"ha-{HA_VERSION}"
    return Path(os.environ.get("SNAP_HA_VENV") or default)


def hass_executable() -> Path:
    """The `hass` of the HA venv, or a HomeAssistantError saying how to get it."""
    venv = ha_venv()
    exe = venv / "bin" / "hass"
    if not exe.is_file() or not (venv / ".snap-mqtt-ha-complete").is_file():
        raise HomeAssistantError(
            f"Home Assistant {HA_VERSION} is not installed in {venv} (SNAP_HA_VENV): run "
            f"scripts/setup-ha.sh (scripts/test.sh runs it); it needs Python 3.11 and PyPI")
    return exe


CONFIGURATION_YAML = """\
# Written by tests/ha.py for the snap-mqtt end-to-end test.
homeassistant:
  name: snap-mqtt test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
websocket_api:
device_automation:
automation: !include automations.yaml
input_boolean:
  snap_toggled:
    name: Snap toggled
logger:
  default: warning
  logs:
    homeassistant.bootstrap: info
    homeassistant.setup: info
    homeassistant.components.mqtt: info
    homeassistant.components.automation: info
"""


def mqtt_config_entry(broker_host: str, broker_port: int) -> dict:
    """The MQTT integration's config entry, as HA's own config flow stores it."""
    return {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": broker_host,
        "data": {"broker": broker_host, "port": broker_port, "discovery": True,
                 "discovery_prefix": "homeassistant"},
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }


def write_config(config_dir: Path, http_port: int, broker_host: str, broker_port: int) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(CONFIGURATION_YAML.format(port=http_port))
    (config_dir / "automations.yaml").write_text("[]\n")
    storage = config_dir / ".storage"
    storage.mkdir(exist_ok=True)
    entries = {"version": 1, "minor_version": 1, "key": "core.config_entries",
               "data": {"entries": [mqtt_config_entry(broker_host, broker_port)]}}
    (storage / "core.config_entries").write_text(json.dumps(entries, indent=2))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
               interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` (a text, or a
    function giving one then: the state at the timeout) after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, HomeAssistantError, ValueError, KeyError) as exc:
            last_exc = exc
        time.sleep(interval)
    if callable(what):
        try:
            what = what()
        except (OSError, HomeAssistantError, ValueError, KeyError) as exc:
            what = f"(could not describe: {exc})"
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                       + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class HomeAssistant:
    config_dir: Path
    port: int
    proc: subprocess.Popen | None = None
    token: str | None = None
    _log_file: Any = None

    @classmethod
    def create(cls, config_dir: Path, broker_port: int, broker_host: str = "127.0.0.1") -> "HomeAssistant":
        port = free_port()
        write_config(config_dir, port, broker_host, broker_port)
        return cls(config_dir=config_dir, port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """HA's own log, for failure messages."""
        p = self.config_dir / "hass.out"
        return p.read_text(errors="replace") if p.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "HomeAssistant":
        exe = hass_executable()
        self._log_file = open(self.config_dir / "hass.out", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        self.proc = subprocess.Popen([str(exe), "-c", str(self.config_dir), "--log-no-color"],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until(self._http_up, timeout, f"Home Assistant's HTTP API on port {self.port}", 0.5)
            self.token = self.onboard()
            wait_until(lambda: self.config_entry_state("mqtt") == "loaded", 60,
                       "the MQTT integration to load")
        except Exception as exc:
            self.stop()
            raise HomeAssistantError(f"Home Assistant did not come up: {exc}\n--- hass log ---\n"
                                     f"{self.log_tail()}") from None
        return self

    def _http_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HassExited(f"hass exited with code {self.proc.returncode}")
        status, _ = self.request("GET", "/api/onboarding", auth=False)
        return status == 200

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # HA shuts down cleanly on SIGTERM
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def onboard(self) -> str:
        """Create the owner through the onboarding API and trade its auth code for a token."""
        client_id = f"{self.url}/"
        status, body = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Snap Test", "username": "snaptest",
            "password": secrets.token_urlsafe(16), "language": "en"}, auth=False)
        if status != 200:
            raise HomeAssistantError(f"onboarding refused ({status}): {body}")
        form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": body["auth_code"],
                                       "client_id": client_id}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=form, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["access_token"]

    # ---- REST -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.request(method, path, body)
        if status not in (200, 201):
            raise HomeAssistantError(f"{method} {path} -> {status}: {out}")
        return out

    def state(self, entity_id: str) -> dict | None:
        status, out = self.request("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status != 200:
            raise HomeAssistantError(f"GET state of {entity_id} -> {status}: {out}")
        return out

    def call_service(self, domain: str, service: str, data: dict) -> Any:
        return self.api("POST", f"/api/services/{domain}/{service}", data)

    def config_entry_state(self, domain: str) -> str | None:
        for entry in self.api("GET", "/api/config/config_entries/entry"):
            if entry["domain"] == domain:
                return entry["state"]
        return None

    def save_automation(self, automation_id: str, config: dict) -> None:
        """Create (or replace) an automation through HA's config API; HA reloads automations."""
        self.api("POST", f"/api/config/automation/config/{automation_id}", config)

    def websocket(self) -> "HAWebSocket":
        return HAWebSocket.connect(self.port, self.token or "")


# ---- a minimal websocket client (RFC 6455, text frames), enough for HA's websocket API -----------------
class HAWebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._next_id = 1
        self._send_lock = threading.Lock()

    @classmethod
    def connect(cls, port: int, token: str, timeout: float = 15.0) -> "HAWebSocket":
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /api/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        ws = cls(sock)
        head = ws._read_until(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise HomeAssistantError(f"websocket upgrade refused: {head[:200]!r}")
        if ws.receive().get("type") != "auth_required":
            raise HomeAssistantError("websocket: expected auth_required")
        ws.send({"type": "auth", "access_token": token})
        reply = ws.receive()
        if reply.get("type") != "auth_ok":
            raise HomeAssistantError(f"websocket auth failed: {reply}")
        return ws

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()

    def call(self, type_: str, **payload: Any) -> Any:
        """Send one command and return its result (other messages meanwhile are dropped)."""
        msg_id = self.send_command(type_, **payload)
        while True:
            msg = self.receive()
            if msg.get("id") == msg_id and msg.get("type") == "result":
                if not msg.get("success"):
                    raise HomeAssistantError(f"websocket {type_} failed: {msg.get('error')}")
                return msg.get("result")

    def send_command(self, type_: str, **payload: Any) -> int:
        msg_id = self._next_id
        self._next_id += 1
        self.send({"id": msg_id, "type": type_, **payload})
        return msg_id

    def send(self, obj: dict) -> None:
        self._send_frame(0x1, json.dumps(obj).encode())

    def receive(self) -> dict:
        parts: list[bytes] = []
        while True:
            fin, opcode, data = self._read_frame()
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise HomeAssistantError("websocket closed by Home Assistant")
            parts.append(data)
            if fin:
                return json.loads(b"".join(parts))

    # framing
    def _send_frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        with self._send_lock:
            self.sock.sendall(head + mask + masked)

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HomeAssistantError("websocket connection closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HomeAssistantError("websocket connection closed during the handshake")
            self._buf += chunk
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        mask = self._read_exact(4) if b1 & 0x80 else None
        data = self._read_exact(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data


@dataclass
class StateRecorder:
    """Every `state_changed` event HA fires, collected by a websocket subscription in a thread."""

    ha: HomeAssistant
    changes: list[dict] = field(default_factory=list)
    _ws: HAWebSocket | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "StateRecorder":
        self._ws = self.ha.websocket()
        self._ws.sock.settimeout(None)
        self._ws.call("subscribe_events", event_type="state_changed")
        self._thread = threading.Thread(target=self._run, name="ha-state-recorder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                msg = self._ws.receive()
            except (OSError, HomeAssistantError, ValueError):
                return
            if msg.get("type") == "event":
                data = msg["event"]["data"]
                with self._lock:
                    self.changes.append({"entity_id": data["entity_id"],
                                         "old": data.get("old_state"), "new": data.get("new_state"),
                                         "received": time.monotonic()})

    def of(self, entity_id: str, since: float = 0.0) -> list[dict]:
        """The changes of `entity_id` (dicts with old, new, received) received since `since`
        (time.monotonic()), oldest first."""
        with self._lock:
            return [c for c in self.changes if c["entity_id"] == entity_id and c["received"] >= since]

    def stop(self) -> None:
        if self._ws:
            self._ws.close()
