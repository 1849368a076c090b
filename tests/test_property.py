"""Property-based tests (hypothesis): random configs, random bytes as audio files, random chunkings.

- A random config (YAML file and/or environment) gives valid Settings or a SettingsError that
  names every bad field on its own line, never another exception, and never shows the password.
- Random bytes (pure noise, or a real file with bytes overwritten and cut) saved as .wav/.flac/.ogg:
  `read_audio` returns sane audio or raises AudioFileError naming the file, nothing else.
"""

from __future__ import annotations

import io
import os
import string
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snap_mqtt.audio_io import AudioFileError, read_audio

def props(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    print_blob=True)

# --- random configs --------------------------------------------------------------------------------

# For every setting: values that must be accepted and values that must be rejected. The expected
# set of bad fields follows from which strategy each value came from, not from the implementation.
_text = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20)
_not_a_number = st.sampled_from(["abc", "fast", "1,5", "", "ten"]) | st.lists(st.integers(), min_size=1, max_size=2)
_not_a_bool = st.sampled_from(["maybe", "2", "sometimes"]) | st.lists(st.booleans(), min_size=1, max_size=2)


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


FIELDS: dict[str, tuple[st.SearchStrategy, st.SearchStrategy]] = {
    # name: (valid, invalid)
    "threshold": (_floats(0.01, 0.99), _floats(-5, 0) | _floats(1.0, 50) | _not_a_number),
    "refractory": (_floats(0.001, 2.0), _floats(-3, 0) | _floats(2.01, 100) | _not_a_number),
    "gap": (_floats(0.01, 10.0), _floats(-3, 0) | _floats(10.01, 1e6) | _not_a_number),
    "max_count": (_ints(1, 10), _ints(-5, 0) | _ints(11, 10**6) | st.just(2.5) | _not_a_number),
    "max_event_age": (_floats(0.01, 3600), _floats(-10, 0) | _floats(3601, 1e9) | _not_a_number),
    "hop_samples": (_ints(1, 100000), _ints(-100, 0) | _not_a_number),
    "node_id": (_text, st.sampled_from(["", "has space", "a/b", "x#", "kitchen+1", "é"]) | st.text(
        alphabet="abc", min_size=65, max_size=80)),
    "base_topic": (st.sampled_from(["snap_mqtt", "home/snaps", "a-b_c/d"]),
                   st.sampled_from(["", "/", "a/#", "has space", "x/+/y"])),
    "discovery_prefix": (st.sampled_from(["homeassistant", "ha", "my/ha"]),
                         st.sampled_from(["", "#", "a b", "+"])),
    "mqtt.host": (_text, st.just("") | st.lists(_text, min_size=1, max_size=2)),
    "mqtt.port": (_ints(1, 65535), _ints(-10, 0) | _ints(65536, 10**7) | _not_a_number),
    "mqtt.username": (_text, st.lists(_text, min_size=1, max_size=2)),
    "mqtt.keepalive": (_ints(5, 3600), _ints(-5, 4) | _ints(3601, 10**6) | _not_a_number),
    "mqtt.tls": (st.booleans(), _not_a_bool),
    "mqtt.reconnect_max_delay": (_floats(0.01, 3600), _floats(-5, 0) | _floats(3601, 1e9) | _not_a_number),
    "audio.channels": (_ints(1, 32), _ints(-3, 0) | _ints(33, 1000) | _not_a_number),
    "audio.block_seconds": (_floats(0.001, 1.0), _floats(-1, 0) | _floats(1.01, 100) | _not_a_number),
    "audio.sample_rate": (_ints(8000, 384000), _ints(1, 7999) | _ints(384001, 10**7) | _not_a_number),
    "audio.device": (_text | _ints(0, 64), st.lists(_ints(0, 3), min_size=1, max_size=2)),
}

# A password that must never leak: distinctive, so a substring search cannot miss it.
_password = st.text(alphabet=string.ascii_letters + string.digits, min_size=6, max_size=16).map(
    lambda s: f"PW-{s}-SECRET")
_unknown_key = st.from_regex(r"[a-z]{3,10}(_[a-z]{2,6})?", fullmatch=True).filter(
    lambda k: k not in {f.split(".")[-1] for f in FIELDS} | {"mqtt", "audio", "password", "model_path",
                                                              "capture_dir", "client_id", "tls_ca",
                                                              "tls_cert", "tls_key", "tls_insecure"})


@st.composite
def configs(draw) -> tuple[dict, set[str], str | None, bool]:
    """(nested config dict, expected bad field paths, password or None, password valid?)"""
    chosen = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=8))
    cfg: dict = {}
    bad: set[str] = set()
    for path in chosen:
        valid, invalid = FIELDS[path]
        is_bad = draw(st.booleans())
        value = draw(invalid if is_bad else valid)
        if is_bad:
            bad.add(path)
        section, _, key = path.rpartition(".")
        (cfg.setdefault(section, {}) if section else cfg)[key] = value
    for section in draw(st.lists(st.sampled_from(["", "mqtt", "audio"]), max_size=2)):
        key = draw(_unknown_key)
        (cfg.setdefault(section, {}) if section else cfg)[key] = draw(st.integers() | _text)
        bad.add(f"{section}.{key}" if section else key)
    password = None
    password_ok = True
    if draw(st.booleans()):
        password = draw(_password)
        password_ok = draw(st.booleans())
        # a password given as a list (a YAML slip) is invalid, and still must not be shown
        cfg.setdefault("mqtt", {})["password"] = password if password_ok else [password, password]
        if not password_ok:
            bad.add("mqtt.password")
    return cfg, bad, password, password_ok


def _named_fields(problems: list[str]) -> list[str]:
    return [line.split(":", 1)[0].strip() for line in problems]


def _check_outcome(load, bad: set[str], password: str | None) -> None:
    from snap_mqtt.settings import Settings, SettingsError

    try:
        s = load()
    except SettingsError as exc:
        assert bad, f"valid config rejected: {exc.problems}"
        text = str(exc)
        assert sorted(_named_fields(exc.problems)) == sorted(bad), exc.problems
        assert len(exc.problems) == len(bad)  # one line per bad field
        assert all("\n" not in p for p in exc.problems)
        if password:
            assert password not in text and password not in repr(exc.problems)
    else:
        assert not bad, f"invalid fields {sorted(bad)} accepted"
        assert isinstance(s, Settings)
        if password:
            assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == password
            for shown in (repr(s), str(s), str(s.redacted()), s.model_dump_json()):
                assert password not in shown


@props(150)
@given(configs())
def test_random_yaml_config_valid_or_named_errors(cfg):
    from snap_mqtt.settings import Settings

    cfg, bad, password, _ = cfg
    with tempfile.TemporaryDirectory() as d, _clean_env():
        path = Path(d) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        _check_outcome(lambda: Settings.load(path, env_file=None), bad, password)


def _env_value(v) -> str:
    """How a user would type a value into the environment (lists as JSON)."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


@st.composite
def env_configs(draw):
    cfg, bad, password, password_ok = draw(configs())
    # Unknown top-level variables (SNAP_FOO) cannot be told from other programs' variables, and
    # a password typed into the environment is always a string: drop those cases here.
    env: dict[str, str] = {}
    expected: set[str] = set()
    for section, body in cfg.items():
        items = body.items() if isinstance(body, dict) and section in ("mqtt", "audio") else [(None, body)]
        for key, value in items:
            path = f"{section}.{key}" if key is not None else section
            if key is None and path not in FIELDS:
                continue  # unknown top-level key
            if path == "mqtt.password":
                value = password
            elif path in ("node_id", "mqtt.host", "mqtt.username", "base_topic", "discovery_prefix",
                          "audio.device") and isinstance(value, list):
                continue  # as a string in the environment, a list's JSON text is a fine string
            name = "SNAP_" + path.upper().replace(".", "__")
            env[name] = _env_value(value)
            if path in bad and path != "mqtt.password":
                expected.add(path)
    return env, expected, password


@contextmanager
def _clean_env(extra: dict[str, str] | None = None):
    saved = {k: v for k, v in os.environ.items() if k.startswith("SNAP_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(extra or {})
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("SNAP_")]:
            del os.environ[k]
        os.environ.update(saved)


@props(150)
@given(env_configs())
def test_random_environment_valid_or_named_errors(case):
    from snap_mqtt.settings import Settings

    env, bad, password = case
    with tempfile.TemporaryDirectory() as d, _clean_env(env):
        cwd = os.getcwd()
        os.chdir(d)  # no stray .env file
        try:
            _check_outcome(lambda: Settings.load(None, env_file=None), bad, password)
        finally:
            os.chdir(cwd)


def test_settings_error_has_one_line_per_field_for_a_known_bad_config(tmp_path):
    """A hand-written example of the property, readable as documentation."""
    from snap_mqtt.settings import Settings, SettingsError

    p = tmp_path / "c.yaml"
    p.write_text("gap: -1\nmax_count: many\nmqtt:\n  port: 99999\n  password: [hunter2-pw]\n  hots: x\n")
    with pytest.raises(SettingsError) as err:
        Settings.load(p, env_file=None)
    assert sorted(_named_fields(err.value.problems)) == ["gap", "max_count", "mqtt.hots", "mqtt.password",
                                                         "mqtt.port"]
    assert "hunter2-pw" not in str(err.value)


# --- random bytes as audio files ---------------------------------------------------------------


def _base_files() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(4000) * 0.2).astype(np.float32)
    out = {}
    for name, fmt, sub, ch in [("pcm16.wav", "WAV", "PCM_16", 1), ("float.wav", "WAV", "FLOAT", 2),
                               ("u8.wav", "WAV", "PCM_U8", 1), ("pcm24.flac", "FLAC", "PCM_24", 1),
                               ("stereo.flac", "FLAC", "PCM_16", 2), ("vorbis.ogg", "OGG", "VORBIS", 1)]:
        buf = io.BytesIO()
        y = x if ch == 1 else np.stack([x, -x], axis=1)
        sf.write(buf, y, 16000, subtype=sub, format=fmt)
        out[name] = buf.getvalue()
    return out


BASES = _base_files()


@st.composite
def damaged_files(draw) -> tuple[str, bytes]:
    """A real file with some bytes overwritten (mostly in the header) and maybe cut short."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[name])
    for _ in range(draw(st.integers(0, 6))):
        hi = 64 if draw(st.booleans()) else len(data)  # headers hold the interesting fields
        pos = draw(st.integers(0, min(hi, len(data)) - 1))
        chunk = draw(st.binary(min_size=1, max_size=4))
        data[pos:pos + len(chunk)] = chunk
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    # the suffix may lie about the format, as files in the wild do
    suffix = draw(st.sampled_from([Path(name).suffix, ".wav", ".flac", ".ogg"]))
    return suffix, bytes(data)


def _check_audio_or_named_error(suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"clip{suffix}"
        p.write_bytes(data)
        try:
            a = read_audio(p, sample_rate=16000)
        except AudioFileError as exc:
            assert str(p) in str(exc)
            return
        assert a.sample_rate == 16000
        assert a.samples.ndim == 1 and a.samples.dtype == np.float32 and len(a.samples) > 0
        assert np.all(np.isfinite(a.samples))
        # nothing a file can say makes a few KB into more than ~16x its samples (1 kHz floor)
        assert len(a.samples) <= 16 * 8 * max(len(data), 1)


@props(300)
@given(st.sampled_from([".wav", ".flac", ".ogg"]), st.binary(max_size=4096))
def test_random_bytes_as_audio_file(suffix, data):
    _check_audio_or_named_error(suffix, data)


@props(400)
@given(damaged_files())
def test_damaged_real_audio_file(case):
    _check_audio_or_named_error(*case)


@props(100)
@given(st.sampled_from(sorted(BASES)), st.binary(min_size=1, max_size=2048))
def test_valid_header_random_payload(name, payload):
    """The first 44 bytes of a real file (a header that parses) followed by garbage."""
    _check_audio_or_named_error(Path(name).suffix, BASES[name][:44] + payload)


def test_undamaged_bases_read_back():
    """The property tests start from files that are valid: check that they are."""
    for name, data in BASES.items():
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_bytes(data)
            a = read_audio(p)
            assert a.sample_rate == 16000 and len(a.samples) == 4000, name


# --- random chunkings -> same events -------------------------------------------------------------

# The planned model's geometry (the detector reads it from the model file; here from a WindowSpec).
SPEC_RATE, SPEC_WINDOW, SPEC_HOP = 16000, 4000, 320


def _spec():
    from snap_mqtt.detector import WindowSpec

    return WindowSpec(sample_rate=SPEC_RATE, window_samples=SPEC_WINDOW, hop_samples=SPEC_HOP,
                      threshold=0.5, onset_min_samples=1440, onset_max_samples=3360)


def _region_scorer(wins: np.ndarray) -> np.ndarray:
    """A stand-in model, a pure function of each window: loud transient inside the positive
    region -> high probability. Deterministic per window, as the real model is."""
    region = wins[:, 1440:3361]
    hf = np.abs(np.diff(region, axis=1)).max(axis=1)
    return np.clip(hf / 0.4, 0.0, 1.0).astype(np.float32)


def _scene(seed: int, rate: int, seconds: float = 4.0) -> tuple[np.ndarray, list[float]]:
    """Quiet noise with 1-5 decaying clicks at random times (some 250 ms apart, some gestures)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = (rng.standard_normal(n) * 0.003).astype(np.float32)
    t, times = 0.3 + rng.uniform(0, 0.3), []
    while t < seconds - 0.5 and len(times) < 5:
        times.append(t)
        t += float(rng.choice([0.25, 0.35, 0.5, 0.9, 1.3]))
    burst_len = int(0.03 * rate)
    env = np.exp(-np.arange(burst_len) / (0.004 * rate))
    for t in times:
        i = int(t * rate)
        x[i:i + burst_len] += (rng.uniform(-0.8, 0.8, burst_len) * env).astype(np.float32)
    return x, times


def _chunks(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out, i, k = [], 0, 0
    while i < len(x):
        s = sizes[k % len(sizes)]
        out.append(x[i:i + s])
        i, k = i + s, k + 1
    return out


def _run_pipeline(x: np.ndarray, rate: int, sizes: list[int]) -> list[tuple]:
    from snap_mqtt.pipeline import SnapPipeline

    p = SnapPipeline(_region_scorer, None, input_rate=rate, spec=_spec())
    events = []
    for block in _chunks(x, sizes):
        events.extend(p.process(block))
    events.extend(p.flush())
    # timestamp is the wall clock: everything else must be identical
    return [(type(e).__name__, e.time, getattr(e, "detected_at", None), getattr(e, "index", None),
             getattr(e, "count", None), round(e.confidence, 5)) for e in events]


# tiny blocks cost a Python call each: keep them in the mix, but mostly realistic sizes
_sizes = st.lists(st.integers(41, 9000) | st.integers(2, 40), min_size=1, max_size=6).filter(
    lambda s: sum(s) / len(s) > 20)


def test_one_sample_blocks_give_the_same_events():
    x, _ = _scene(5, 16000, seconds=3.0)
    assert _run_pipeline(x, 16000, [1]) == _run_pipeline(x, 16000, [len(x)])


@props(25)
@given(st.integers(0, 2**16), st.sampled_from([16000, 44100, 48000, 22050]), _sizes)
def test_chunking_never_changes_events(seed, rate, sizes):
    x, times = _scene(seed, rate)
    whole = _run_pipeline(x, rate, [len(x)])
    assert _run_pipeline(x, rate, sizes) == whole
    # and the stand-in model does find the clicks, so the comparison is not of two empty lists
    snaps = [e for e in whole if e[0] == "SnapEvent"]
    assert len(snaps) == len(times)
    assert np.allclose([e[1] for e in snaps], times, atol=0.004)


@pytest.fixture(scope="module")
def shipped_model():
    from snap_mqtt.model_file import default_model_path, load_model

    return load_model(default_model_path())


@pytest.fixture(scope="module")
def demo_excerpt() -> tuple[np.ndarray, int]:
    """The demo scene from 6 s to 17 s: its double and triple snaps."""
    root = Path(__file__).resolve().parent.parent
    x, rate = sf.read(str(root / "demo" / "demo-scene.flac"), dtype="float32")
    return x[int(6 * rate):int(17 * rate)], rate


def _run_model(model, x: np.ndarray, rate: int, sizes: list[int]) -> list:
    from snap_mqtt.pipeline import SnapPipeline

    p = SnapPipeline(model, None, input_rate=rate)
    events = []
    for block in _chunks(x, sizes):
        events.extend(p.process(block))
    events.extend(p.flush())
    return events


@props(8)
@given(st.lists(st.integers(200, 20000) | st.integers(3, 199), min_size=1, max_size=4).filter(
    lambda s: sum(s) / len(s) > 150))
def test_chunking_never_changes_events_of_the_shipped_model(shipped_model, demo_excerpt, sizes):
    """The real TorchScript model: batches of different sizes may round the last bit of a
    probability differently (~1e-7), never a decision."""
    x, rate = demo_excerpt
    key = lambda es: [(type(e).__name__, e.time, getattr(e, "index", None), getattr(e, "count", None)) for e in es]
    whole = _run_model(shipped_model, x, rate, [len(x)])
    got = _run_model(shipped_model, x, rate, sizes)
    assert key(got) == key(whole)
    assert np.allclose([e.confidence for e in got], [e.confidence for e in whole], atol=1e-5)
    assert sum(type(e).__name__ == "GestureEvent" for e in whole) >= 2  # the double and the triple at least


# --- damaged model files ------------------------------------------------------------------------


@st.composite
def damaged_model_bytes(draw) -> bytes:
    from snap_mqtt.model_file import default_model_path

    data = bytearray(default_model_path().read_bytes())
    kind = draw(st.sampled_from(["flip", "cut", "splice"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 12))):
            # the zip's directory (at the end) and headers hold the interesting fields
            pos = draw(st.integers(0, len(data) - 1) | st.integers(max(0, len(data) - 4096), len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
    elif kind == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    else:
        pos = draw(st.integers(0, len(data) - 1))
        data[pos:pos + 64] = draw(st.binary(min_size=64, max_size=64))
    return bytes(data)


@props(25)
@given(damaged_model_bytes())
def test_damaged_model_file_is_a_named_error_or_a_working_model(data):
    """A model file damaged on disk: ModelFileError naming the file, or (damage inside the weights)
    a model that still runs; never another exception."""
    import torch

    from snap_mqtt.model_file import ModelFileError, load_model

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "damaged.pt"
        p.write_bytes(data)
        try:
            m = load_model(p)
        except ModelFileError as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)
            return
        out = m.predict(torch.zeros(2, m.metadata.window_samples))
        assert tuple(out.shape) == (2,)
