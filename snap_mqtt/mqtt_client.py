"""The MQTT side of the listener: one paho-mqtt 2.x client per node.

- `connect_async` + `loop_start`: paho's own thread connects, and reconnects with capped
  exponential backoff (1 s doubling to `reconnect_max_delay`); we log once per state change,
  not once per retry.
- The will is `offline` (retained) on the availability topic; a clean stop publishes `offline`
  itself. `online` is published only while the audio input is up as well.
- On every (re)connect: availability, discovery, control state, subscriptions, then the outbox.
- Events made while disconnected wait in a bounded outbox and are sent after reconnect only if
  younger than `max_event_age`; older ones are dropped and counted (a snap made during an outage
  must not switch a light minutes later). Every event also carries an MQTT v5 message expiry.
- TLS: a bad CA file is an error at start naming the file; a failed handshake is retried as
  TLS, never downgraded to plaintext.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from snap_mqtt.discovery import (PAYLOAD_OFF, PAYLOAD_OFFLINE, PAYLOAD_ON, PAYLOAD_ONLINE,
                                 discovery_messages, format_threshold, parse_pause, parse_threshold)
from snap_mqtt.topics import Topics

log = logging.getLogger("snap_mqtt.mqtt")

# how long after subscribing to our own retained control state we wait for it before
# publishing the current state (retained messages arrive right after the SUBACK)
RESTORE_WINDOW_S = 0.5


class MqttConfigError(Exception):
    """MQTT options that cannot work (unreadable CA file, bad TLS files...). Names the cause."""


@dataclass(frozen=True)
class MqttOptions:
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None  # plain text here; never logged
    client_id: str | None = None
    keepalive: int = 60
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False
    reconnect_max_delay: int = 30


@dataclass
class _Outgoing:
    topic: str
    payload: str
    created: float  # time.monotonic() when the event was made


@dataclass
class LinkStats:
    published: int = 0
    delivered_late: int = 0  # sent after a reconnect, still young enough
    dropped_stale: int = 0  # too old by the time the broker was back
    dropped_overflow: int = 0  # outbox full


class MqttLink:
    """Publishes events and availability for one node; applies pause/threshold commands.

    `on_pause(bool)` and `on_threshold(float)` are called from paho's thread when a command (or
    the retained state restored at start) arrives; `controls()` returns (paused, threshold,
    where the threshold came from: "user" (a command), "config" (the settings) or "model")."""

    def __init__(self, options: MqttOptions, topics: Topics, sw_version: str, *,
                 max_event_age: float = 5.0, outbox_size: int = 256,
                 on_pause: Callable[[bool], None] | None = None,
                 on_threshold: Callable[[float], None] | None = None,
                 controls: Callable[[], tuple[bool, float, str]] | None = None,
                 model_name: str = "snap-mqtt listener") -> None:
        self.options = options
        self.topics = topics
        self.sw_version = sw_version
        self.model_name = model_name
        self.max_event_age = float(max_event_age)
        self.on_pause = on_pause
        self.on_threshold = on_threshold
        self.controls = controls
        self.stats = LinkStats()
        self._lock = threading.RLock()
        self._outbox: deque[_Outgoing] = deque()
        self._inflight: dict[int, _Outgoing] = {}  # sent, not yet acknowledged (by message id)
        self._acked_early: set[int] = set()
        self._outbox_size = outbox_size
        self._connected = False
        self._audio_up = False
        self._state = ""  # last logged connection state
        self._restored: set[str] = set()
        self._restore_done = threading.Event()
        self._restore_timer: threading.Timer | None = None
        self._state_sub_mid: int | None = None
        self._stopping = False
        self.client = self._make_client()

    # ---- setup -------------------------------------------------------------------------
    @property
    def client_id(self) -> str:
        return self.options.client_id or f"snap_mqtt_{self.topics.node_id}"

    def _make_client(self) -> mqtt.Client:
        o = self.options
        client_id = self.client_id
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        if o.username:
            c.username_pw_set(o.username, o.password or None)
        if o.tls or o.ca_certs:
            for name in ("ca_certs", "certfile", "keyfile"):
                value = getattr(o, name)
                if value and not Path(value).is_file():
                    raise MqttConfigError(f"mqtt.{name}: {value}: file not found")
            try:
                c.tls_set(ca_certs=o.ca_certs, certfile=o.certfile, keyfile=o.keyfile,
                          cert_reqs=ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as exc:
                bad = o.ca_certs or o.certfile or "system CA store"
                raise MqttConfigError(f"mqtt TLS setup failed ({bad}): {exc}") from None
            if o.tls_insecure:
                c.tls_insecure_set(True)
        c.will_set(self.topics.availability, PAYLOAD_OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(o.reconnect_max_delay)))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.max_inflight_messages_set(0)  # no window: see _purge_stale_inflight
        return c

    def start(self) -> None:
        o = self.options
        self._log_state("connecting", f"MQTT: connecting to {o.host}:{o.port}"
                        f"{' (TLS)' if (o.tls or o.ca_certs) else ''} as {self.client_id}")
        self.client.connect_async(o.host, int(o.port), keepalive=int(o.keepalive))
        self.client.loop_start()

    def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until the outbox has gone out; for the end of a replayed file."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._connected and self._restore_done.is_set() and not self._outbox:
                    return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 1.0) -> None:
        """Publish `offline` (retained), flush, disconnect. Bounded by `timeout` seconds."""
        with self._lock:
            self._stopping = True
            connected = self._connected
            pending = len(self._outbox)
        if self._restore_timer:
            self._restore_timer.cancel()
        if connected and not self._restore_done.is_set():
            self._finish_restore()  # send what is queued rather than drop it
        with self._lock:
            pending = len(self._outbox)
        if connected:
            try:
                info = self.client.publish(self.topics.availability, PAYLOAD_OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT: could not publish offline at stop: %s", exc)
        if pending:
            log.info("MQTT: %d undelivered event(s) discarded at stop", pending)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- state logging -------------------------------------------------------------------
    def _log_state(self, state: str, message: str, level: int = logging.INFO) -> None:
        # one line per state change, not one per retry
        if state != self._state:
            self._state = state
            log.log(level, message)

    # ---- paho callbacks (paho's thread) ------------------------------------------------------
    def _on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]
        o = self.options
        if isinstance(exc, ssl.SSLError):
            self._log_state(f"tls:{type(exc).__name__}", f"MQTT: TLS handshake with {o.host}:{o.port} failed: "
                            f"{exc}; retrying over TLS (never plaintext)", logging.ERROR)
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc or "unknown")
            self._log_state("unreachable", f"MQTT: broker {o.host}:{o.port} unreachable ({reason}); "
                            f"retrying with backoff up to {o.reconnect_max_delay} s", logging.WARNING)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            hint = ""
            if str(reason_code) in ("Bad user name or password", "Not authorized"):
                hint = " (check mqtt.username / mqtt.password)"
            self._log_state(f"refused:{reason_code}", f"MQTT: broker refused the connection: {reason_code}{hint}",
                            logging.ERROR)
            return
        self._purge_stale_inflight()
        with self._lock:
            self._connected = True
        o = self.options
        self._log_state("connected", f"MQTT: connected to {o.host}:{o.port}")
        self._publish_availability()
        self.publish_discovery()
        t = self.topics
        client.subscribe([(t.ha_status, 1), (t.pause_command, 1), (t.sensitivity_command, 1)])
        if not self._restore_done.is_set():
            # our own retained control state: restores pause/threshold across restarts; events
            # wait in the outbox until it is known (a listener paused before a restart stays quiet)
            result, mid = client.subscribe([(t.pause_state, 1), (t.sensitivity_state, 1)])
            self._state_sub_mid = mid
        else:
            self.publish_controls()
            self._drain_outbox()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid == self._state_sub_mid and not self._restore_done.is_set():
            self._restore_timer = threading.Timer(RESTORE_WINDOW_S, self._finish_restore)
            self._restore_timer.daemon = True
            self._restore_timer.start()

    def _finish_restore(self) -> None:
        if self._restore_done.is_set():
            return
        self._restore_done.set()
        t = self.topics
        try:
            self.client.unsubscribe([t.pause_state, t.sensitivity_state])
        except (RuntimeError, ValueError):
            pass
        self.publish_controls()
        self._drain_outbox()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if self._inflight.pop(mid, None) is None:
                self._acked_early.add(mid)
                if len(self._acked_early) > 1000:  # acks of non-event messages (discovery...)
                    self._acked_early.clear()

    def _purge_stale_inflight(self) -> None:
        """Events sent just before a connection died were never acknowledged; paho re-sends them
        right after this on_connect. Drop those now older than max_event_age from paho's queue,
        so they cannot fire late. (paho has no public API for this; a paho without these
        attributes just re-sends, and the v5 message expiry still bounds the damage.)"""
        now = time.monotonic()
        with self._lock:
            stale = [mid for mid, item in self._inflight.items() if now - item.created > self.max_event_age]
            for mid in stale:
                del self._inflight[mid]
        out = getattr(self.client, "_out_messages", None)
        mutex = getattr(self.client, "_out_message_mutex", None)
        if not stale or out is None or mutex is None:
            return
        with mutex:
            dropped = sum(out.pop(mid, None) is not None for mid in stale)
        if dropped:
            self.stats.dropped_stale += dropped
            log.info("MQTT: dropped %d unacknowledged event(s) older than %.1f s instead of re-sending them",
                     dropped, self.max_event_age)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._connected = False
        if self._stopping:
            return
        if self._state.startswith(("refused:", "tls:")):
            return  # the drop that follows a refusal: keep that state, or each retry logs twice
        self._log_state("disconnected", f"MQTT: disconnected ({reason_code}); reconnecting with backoff up to "
                        f"{self.options.reconnect_max_delay} s", logging.WARNING)

    def _on_message(self, client, userdata, msg) -> None:
        t = self.topics
        try:
            if msg.topic == t.ha_status:
                if msg.payload.decode("utf-8", "replace").strip() == "online":
                    log.info("MQTT: Home Assistant is online: re-publishing discovery")
                    self.publish_discovery()
                    self.publish_controls()
            elif msg.topic in (t.pause_command, t.pause_state):
                if msg.topic == t.pause_state and (self._restore_done.is_set() or t.pause_state in self._restored):
                    return
                value = parse_pause(msg.payload)
                if value is None:
                    log.warning("MQTT: ignoring pause payload %r on %s (expected ON/OFF)", msg.payload[:40], msg.topic)
                    return
                if msg.topic == t.pause_state:
                    self._restored.add(msg.topic)
                    log.info("MQTT: restored pause state %s", "ON" if value else "OFF")
                if self.on_pause:
                    self.on_pause(value)
                if msg.topic == t.pause_command:
                    self.publish_controls()
            elif msg.topic in (t.sensitivity_command, t.sensitivity_state):
                if msg.topic == t.sensitivity_state and (self._restore_done.is_set() or t.sensitivity_state in self._restored):
                    return
                value = parse_threshold(msg.payload)
                if value is None:
                    log.warning("MQTT: ignoring threshold payload %r on %s (expected a number in [0.05, 0.95])",
                                msg.payload[:40], msg.topic)
                    return
                if msg.topic == t.sensitivity_state:
                    self._restored.add(msg.topic)
                    source = dict(getattr(msg.properties, "UserProperty", None) or []).get("source", "user")
                    if source != "user":
                        # a model default or a config value, not a choice made in Home Assistant:
                        # today's model and settings decide
                        log.info("MQTT: retained threshold %.2f came from the %s; not restored", value, source)
                        return
                    log.info("MQTT: restored threshold %.2f", value)
                if self.on_threshold:
                    self.on_threshold(value)
                if msg.topic == t.sensitivity_command:
                    self.publish_controls()
        except Exception:  # a bad command must not kill paho's thread
            log.exception("MQTT: error handling message on %s", msg.topic)

    # ---- publishing ---------------------------------------------------------------------------
    def _publish(self, topic: str, payload: str, qos: int = 1, retain: bool = False,
                 properties: Properties | None = None) -> bool:
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT: publish to %s failed: %s", topic, exc)
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _publish_availability(self) -> None:
        with self._lock:
            if not self._connected:
                return
            payload = PAYLOAD_ONLINE if self._audio_up else PAYLOAD_OFFLINE
        self._publish(self.topics.availability, payload, retain=True)

    def set_audio_up(self, up: bool) -> None:
        """Availability is `online` only while the broker and the audio input are both up."""
        with self._lock:
            changed = up != self._audio_up
            self._audio_up = up
        if changed:
            self._publish_availability()

    def publish_discovery(self) -> None:
        for m in discovery_messages(self.topics, self.sw_version, self.model_name):
            self._publish(m.topic, json.dumps(m.payload, sort_keys=True), retain=True)

    def publish_controls(self) -> None:
        if self.controls is None or not self._connected:
            return
        paused, threshold, source = self.controls()
        self._publish(self.topics.pause_state, PAYLOAD_ON if paused else PAYLOAD_OFF, retain=True)
        # where the threshold came from travels with the retained state (an MQTT v5 user property),
        # so a restart restores a user's choice but not an old model's default over a new model's
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("source", source)
        self._publish(self.topics.sensitivity_state, format_threshold(threshold), retain=True, properties=props)

    def publish_event(self, topic: str, payload: dict, created: float | None = None) -> None:
        """Publish one event (QoS 1, not retained), or keep it in the outbox while disconnected."""
        item = _Outgoing(topic, json.dumps(payload), time.monotonic() if created is None else created)
        with self._lock:
            if not self._connected or not self._restore_done.is_set() or self._outbox:
                if len(self._outbox) >= self._outbox_size:
                    self._outbox.popleft()
                    self.stats.dropped_overflow += 1
                self._outbox.append(item)
                return
        self._send(item)

    def _send(self, item: _Outgoing) -> bool:
        age = time.monotonic() - item.created
        remaining = self.max_event_age - age
        if remaining <= 0:
            self.stats.dropped_stale += 1
            return False
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, int(remaining + 0.999))
        try:
            # not under self._lock: paho calls on_publish holding its own lock (lock order)
            info = self.client.publish(item.topic, item.payload, qos=1, properties=props)
            ok = info.rc == mqtt.MQTT_ERR_SUCCESS
            if ok:
                with self._lock:
                    if info.mid in self._acked_early:  # the PUBACK beat us here
                        self._acked_early.discard(info.mid)
                    else:
                        self._inflight[info.mid] = item
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT: publish to %s failed: %s", item.topic, exc)
            return False
        if ok:
            self.stats.published += 1
        return ok

    def _drain_outbox(self) -> None:
        with self._lock:
            items = list(self._outbox)
            self._outbox.clear()
        if not items:
            return
        if self.controls is not None and self.controls()[0]:
            self.stats.dropped_stale += len(items)
            log.info("MQTT: detection is paused: %d event(s) made before the pause was restored dropped",
                     len(items))
            return
        sent = stale = 0
        for item in items:
            if self._send(item):
                sent += 1
            else:
                stale += 1
        self.stats.delivered_late += sent
        log.info("MQTT: connected: sent %d queued event(s), dropped %d older than %.1f s",
                 sent, stale, self.max_event_age)


def probe_broker(options: MqttOptions, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect once (for `snap-mqtt check`): (True, "...") or (False, what went wrong)."""
    done = threading.Event()
    result: dict[str, str] = {}
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                    client_id=f"{options.client_id or 'snap-mqtt'}-check", protocol=mqtt.MQTTv5)
    if options.username:
        c.username_pw_set(options.username, options.password or None)
    where = f"{options.host}:{options.port}"
    if options.tls or options.ca_certs:
        for name in ("ca_certs", "certfile", "keyfile"):
            value = getattr(options, name)
            if value and not Path(value).is_file():
                return False, f"mqtt.{name}: {value}: file not found"
        try:
            c.tls_set(ca_certs=options.ca_certs, certfile=options.certfile, keyfile=options.keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            return False, f"TLS setup failed: {exc}"
        if options.tls_insecure:
            c.tls_insecure_set(True)

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = str(reason_code)
        result["ok"] = "" if reason_code.is_failure else "1"
        done.set()

    c.on_connect = on_connect
    try:
        c.connect(options.host, int(options.port), keepalive=10)
    except ssl.SSLError as exc:
        return False, f"TLS handshake with {where} failed: {exc}"
    except OSError as exc:
        return False, f"cannot reach the broker at {where}: {exc.strerror or exc}"
    c.loop_start()
    try:
        if not done.wait(timeout):
            return False, f"no answer from the broker at {where} within {timeout:.0f} s"
        if not result.get("ok"):
            hint = " (check mqtt.username / mqtt.password)" if result["rc"] in (
                "Bad user name or password", "Not authorized") else ""
            return False, f"the broker at {where} refused the connection: {result['rc']}{hint}"
        return True, f"connected to {where}{' over TLS' if (options.tls or options.ca_certs) else ''}"
    finally:
        c.disconnect()
        c.loop_stop()
