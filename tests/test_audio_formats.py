"""Real audio files in every format, rate, width and state of damage a user may feed us.

Good files (8/16/24/32-bit int, float32/64, stereo, odd rates, FLAC/OGG/WAV) must give the snaps
of the demo scene back at the right times; broken ones (corrupt, empty, zero-length, truncated,
lying headers) must give an AudioFileError that names the file, never another exception.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snap_mqtt.audio_io import AudioFileError, read_audio, resample
from snap_mqtt.onset import find_onset

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "demo-scene.flac"
DEMO_TRUTH = json.loads((ROOT / "demo" / "demo-scene.json").read_text())

# A 5 s excerpt of the demo scene holding its double snap (onsets 8.0 and 8.35 s in the scene).
EXCERPT_START, EXCERPT_SECONDS = 6.0, 5.0
EXCERPT_SNAPS = [t - EXCERPT_START for t in DEMO_TRUTH["snaps"]
                 if EXCERPT_START <= t < EXCERPT_START + EXCERPT_SECONDS]
RATE = 16000


@dataclass(frozen=True)
class Fmt:
    suffix: str
    subtype: str
    rate: int = RATE
    channels: int = 1

    @property
    def name(self) -> str:
        return f"{self.subtype.lower()}_{self.rate}_{self.channels}ch{self.suffix}"


GOOD_FORMATS = [
    Fmt(".wav", "PCM_U8"), Fmt(".wav", "PCM_16"), Fmt(".wav", "PCM_24"), Fmt(".wav", "PCM_32"),
    Fmt(".wav", "FLOAT"), Fmt(".wav", "DOUBLE"),
    Fmt(".flac", "PCM_S8"), Fmt(".flac", "PCM_16"), Fmt(".flac", "PCM_24"),
    Fmt(".ogg", "VORBIS"),
    Fmt(".wav", "PCM_16", channels=2), Fmt(".flac", "PCM_24", rate=44100, channels=2),
    Fmt(".wav", "PCM_16", rate=8000), Fmt(".wav", "PCM_16", rate=11025),
    Fmt(".flac", "PCM_16", rate=22050), Fmt(".wav", "FLOAT", rate=96000, channels=2),
    Fmt(".wav", "PCM_24", rate=48000, channels=4),
]


def excerpt() -> np.ndarray:
    with sf.SoundFile(str(DEMO)) as f:
        assert f.samplerate == RATE
        f.seek(int(EXCERPT_START * RATE))
        return f.read(int(EXCERPT_SECONDS * RATE), dtype="float32")


def write_format(x: np.ndarray, fmt: Fmt, folder: Path) -> Path:
    """Write the 16 kHz mono signal x as `fmt`. Extra channels carry the same scene at other gains
    (and one of them polarity-inverted at a low level), so a wrong downmix shows up."""
    y = resample(x, RATE, fmt.rate) if fmt.rate != RATE else x
    if fmt.channels > 1:
        gains = [1.0, 0.6, -0.1, 0.3][: fmt.channels]
        y = np.stack([g * y for g in gains], axis=1)
    p = folder / fmt.name
    sf.write(str(p), y, fmt.rate, subtype=fmt.subtype)
    return p


def onsets_near(x: np.ndarray, rate: int, times: list[float], radius: float = 0.1) -> list[float]:
    """Onset of the strongest transient within `radius` of each expected time, in seconds."""
    out = []
    for t in times:
        lo, hi = int((t - radius) * rate), int((t + radius) * rate)
        o = find_onset(x, rate, start=lo, stop=hi)
        assert o is not None, f"no transient near {t:.3f} s"
        out.append(o.index / rate)
    return out


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[Fmt, Path]:
    folder = tmp_path_factory.mktemp("formats")
    x = excerpt()
    return {fmt: write_format(x, fmt, folder) for fmt in GOOD_FORMATS}


@pytest.mark.parametrize("fmt", GOOD_FORMATS, ids=lambda f: f.name)
def test_every_format_reads_back_with_snaps_in_place(good_files, fmt):
    p = good_files[fmt]
    info = sf.info(str(p))
    assert (info.samplerate, info.channels) == (fmt.rate, fmt.channels)  # the file is what we claim
    a = read_audio(p, sample_rate=RATE)
    assert a.sample_rate == RATE and a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert abs(a.seconds - EXCERPT_SECONDS) < 0.01
    assert np.all(np.isfinite(a.samples)) and np.max(np.abs(a.samples)) <= 1.0 + 1e-6
    # 8 kHz keeps nothing above 4 kHz: the sharp attack is gone and the found onset moves ~10 ms
    tol = 0.015 if fmt.rate <= 8000 else 0.003
    got = onsets_near(a.samples, RATE, EXCERPT_SNAPS)
    assert np.allclose(got, EXCERPT_SNAPS, atol=tol), (fmt.name, got, EXCERPT_SNAPS)


def test_stereo_downmix_is_channel_mean(tmp_path):
    rng = np.random.default_rng(1)
    left = rng.uniform(-0.5, 0.5, 4000).astype(np.float32)
    right = rng.uniform(-0.5, 0.5, 4000).astype(np.float32)
    p = tmp_path / "lr.wav"
    sf.write(str(p), np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    assert np.allclose(read_audio(p).samples, (left + right) / 2, atol=1e-7)


# --- broken files ------------------------------------------------------------------------------


def _valid_bytes(suffix: str, subtype: str, seconds: float = 2.0) -> bytes:
    import io

    x = (np.random.default_rng(0).standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix]
    sf.write(buf, x, RATE, subtype=subtype, format=fmt)
    return buf.getvalue()


def _flac_claiming_frames(n: int) -> bytes:
    """A valid FLAC whose STREAMINFO says it holds n samples (36-bit field at byte 21)."""
    d = bytearray(_valid_bytes(".flac", "PCM_16", 0.5))
    assert d[:4] == b"fLaC"
    d[21] = (d[21] & 0xF0) | ((n >> 32) & 0x0F)
    d[22:26] = (n & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(d)


def _wav_claiming_rate(rate: int) -> bytes:
    """A valid 2 s PCM WAV whose header says `rate` Hz (sample-rate field at byte 24)."""
    d = bytearray(_valid_bytes(".wav", "PCM_16"))
    assert d[:4] == b"RIFF" and d[12:16] == b"fmt "
    d[24:28] = rate.to_bytes(4, "little")
    return bytes(d)


def _wav_with_nan() -> bytes:
    import io

    x = np.zeros(1000, np.float32)
    x[500] = np.nan
    buf = io.BytesIO()
    sf.write(buf, x, RATE, subtype="FLOAT", format="WAV")
    return buf.getvalue()


def _zero_frames(suffix: str, subtype: str) -> bytes:
    import io

    buf = io.BytesIO()
    fmt = {".wav": "WAV", ".flac": "FLAC"}[suffix]
    sf.write(buf, np.zeros(0, np.float32), RATE, subtype=subtype, format=fmt)
    return buf.getvalue()


BROKEN: dict[str, callable] = {
    "empty.wav": lambda: b"",
    "empty.flac": lambda: b"",
    "zero_frames.wav": lambda: _zero_frames(".wav", "PCM_16"),
    "zero_frames.flac": lambda: _zero_frames(".flac", "PCM_16"),
    "text.wav": lambda: b"this is not audio at all\n" * 40,
    "random.flac": lambda: np.random.default_rng(2).bytes(5000),
    "random.ogg": lambda: np.random.default_rng(3).bytes(5000),
    "riff_header_only.wav": lambda: _valid_bytes(".wav", "PCM_16")[:20],
    "flac_cut_mid_stream.flac": lambda: (lambda d: d[: len(d) // 2])(_valid_bytes(".flac", "PCM_16")),
    "flac_cut_in_header.flac": lambda: _valid_bytes(".flac", "PCM_16")[:30],
    "ogg_cut_early.ogg": lambda: (lambda d: d[: len(d) // 10])(_valid_bytes(".ogg", "VORBIS")),
    "flac_header_claims_2e36_frames.flac": lambda: _flac_claiming_frames(2**36 - 1),
    "nan_samples.wav": _wav_with_nan,
    # resampled to 16 kHz, a 64 KB file "at 1 Hz" would become 512 M samples (2 GB, 20 s)
    "wav_header_rate_1hz.wav": lambda: _wav_claiming_rate(1),
    "wav_header_rate_4ghz.wav": lambda: _wav_claiming_rate(4_000_000_000),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_gives_audio_file_error_naming_it(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(BROKEN[name]())
    with pytest.raises(AudioFileError) as err:
        read_audio(p, sample_rate=RATE)
    assert str(p) in str(err.value)
    assert "\n" not in str(err.value)  # one clear line, not a dump


def test_missing_file_and_folder_named_like_audio(tmp_path):
    for p in (tmp_path / "nope.wav", tmp_path / "adir.flac"):
        if p.suffix == ".flac":
            p.mkdir()
        with pytest.raises(AudioFileError, match=str(p)):
            read_audio(p)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_U8", "FLOAT"])
def test_wav_cut_mid_stream_gives_the_part_that_is_there(tmp_path, subtype):
    """A WAV cut mid-stream (a recorder killed while writing) still holds usable audio: libsndfile
    reads up to the cut; what comes back must be exactly the start of the original."""
    full = tmp_path / "full.wav"
    x = (np.random.default_rng(4).standard_normal(2 * RATE) * 0.1).astype(np.float32)
    sf.write(str(full), x, RATE, subtype=subtype)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) * 3 // 5])
    whole, part = read_audio(full).samples, read_audio(cut).samples
    assert 0.55 * len(whole) < len(part) < 0.6 * len(whole)
    assert np.array_equal(part, whole[: len(part)])


def test_lying_header_with_modest_claim_reads_real_data(tmp_path):
    """A header claiming more samples than the file holds (but not absurdly many) must not pad
    or repeat data: we get either the real samples or a clear error."""
    p = tmp_path / "claims_more.flac"
    p.write_bytes(_flac_claiming_frames(10 * RATE))
    try:
        a = read_audio(p)
    except AudioFileError as exc:
        assert str(p) in str(exc)
    else:
        assert len(a.samples) <= RATE // 2


def test_max_seconds_reads_only_the_start_of_a_long_file(tmp_path):
    """A long file written block by block (never held in memory whole); max_seconds stops early."""
    p = tmp_path / "long.wav"
    block = (np.sin(np.arange(RATE) / 7.0) * 0.2).astype(np.float32)
    with sf.SoundFile(str(p), "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        for _ in range(600):  # 10 minutes
            f.write(block)
    assert sf.info(str(p)).frames == 600 * RATE
    a = read_audio(p, max_seconds=3.0)
    assert len(a.samples) == 3 * RATE
    assert np.allclose(a.samples[:RATE], block, atol=1e-4)


def test_read_does_not_touch_the_file(tmp_path):
    p = tmp_path / "x.flac"
    sf.write(str(p), excerpt()[:RATE], RATE, subtype="PCM_16")
    before = (p.read_bytes(), os.stat(p).st_mtime_ns)
    read_audio(p, sample_rate=22050)
    assert (p.read_bytes(), os.stat(p).st_mtime_ns) == before


# --- the same files through `snap-mqtt detect` and the shipped model ------------------------------

SNAP_TOL = 0.03  # seconds: an event's onset time against the scene's known onset


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.upper().startswith("SNAP_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no stray .env


def _detect(capsys, *argv: str) -> tuple[int, list[dict], str]:
    from snap_mqtt.cli import main

    code = main(["detect", "--json", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def _snap_times(events: list[dict], path: Path) -> list[float]:
    return [e["time"] for e in events if e["file"] == str(path) and e["event_type"] == "snap"]


def _assert_found(times: list[float], expected: list[float], what: str) -> None:
    for t in expected:
        assert any(abs(s - t) <= SNAP_TOL for s in times), f"{what}: no snap event near {t:.3f} s in {times}"


def test_detect_finds_the_snaps_in_every_format(good_files, capsys, clean_env):
    code, events, err = _detect(capsys, *(str(p) for p in good_files.values()))
    assert code == 0, err
    assert f"{len(good_files)} file(s) processed" in err and "0 failed" in err
    for fmt, p in good_files.items():
        if fmt.rate <= 8000:
            # telephone band: nothing above 4 kHz is left of a snap. The file is read and run like
            # any other (counted as processed above), but the shipped model, trained on 16-44.1 kHz
            # audio, scores these snaps below its threshold (0.81 and 0.62 against 0.94). What must
            # hold: upsampling it invents no transient, so any event sits on a real snap.
            assert all(any(abs(s - t) <= SNAP_TOL for t in EXCERPT_SNAPS) for s in _snap_times(events, p))
            continue
        _assert_found(_snap_times(events, p), EXCERPT_SNAPS, fmt.name)
    # lossless 16 kHz mono files hold the same signal (to 16-bit precision): the same decisions
    ref = [round(t, 2) for t in _snap_times(events, good_files[Fmt(".wav", "FLOAT")])]
    for fmt in (Fmt(".wav", "DOUBLE"), Fmt(".wav", "PCM_32"), Fmt(".wav", "PCM_24"), Fmt(".flac", "PCM_24")):
        assert [round(t, 2) for t in _snap_times(events, good_files[fmt])] == ref, fmt.name


def test_detect_skips_every_broken_file_by_name_and_processes_the_rest(good_files, capsys, clean_env, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for name, make in BROKEN.items():
        (d / name).write_bytes(make())
    good = [good_files[Fmt(".flac", "PCM_16")], good_files[Fmt(".flac", "PCM_16", rate=22050)]]
    for p in good:  # sorted between the broken ones
        (d / f"m_{p.name}").write_bytes(p.read_bytes())
    code, events, err = _detect(capsys, str(d))
    assert code == 1
    assert "Traceback" not in err
    skipped = [ln for ln in err.splitlines() if "skipped" in ln]
    for name in BROKEN:
        assert sum(str(d / name) in ln for ln in skipped) == 1, (name, err)
    assert len(skipped) == len(BROKEN)
    for p in good:
        _assert_found(_snap_times(events, d / f"m_{p.name}"), EXCERPT_SNAPS, p.name)
    assert "2 file(s) processed" in err and f"{len(BROKEN)} failed" in err


def test_detect_on_a_wav_cut_mid_stream_keeps_what_is_there(good_files, capsys, clean_env, tmp_path):
    """A recording cut short after its first snap: that snap is still reported at its time."""
    data = good_files[Fmt(".wav", "PCM_16")].read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + int(2.25 * RATE) * 2])  # header + 2.25 s: the first snap, not the second
    code, events, err = _detect(capsys, str(cut))
    assert code == 0, err
    times = _snap_times(events, cut)
    _assert_found(times, EXCERPT_SNAPS[:1], "cut.wav")
    assert max(times) < 2.25


def _detect_file_peak_mb(path: Path, model, settings) -> tuple[float, list]:
    """Events of `detect_file` and the peak of Python/numpy memory while it ran (tracemalloc
    sees every numpy buffer; torch's own buffers are bounded by the detector's batch size)."""
    import tracemalloc

    from snap_mqtt.cmd_detect import detect_file

    tracemalloc.start()
    try:
        events = list(detect_file(path, model, settings))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, events


def test_detect_streams_a_long_file(tmp_path, clean_env):
    """150 s of 48 kHz stereo (written block by block, never whole in memory), the excerpt's
    snaps at its start and again at its end: both found at the right times (no drift of the time
    base), and `detect` needs no more memory for it than for a 20 s file (loading it whole would
    take its ~58 MB of float32 samples, and more to resample them)."""
    from snap_mqtt.model_file import default_model_path, load_model
    from snap_mqtt.settings import Settings

    rate, tail_at = 48000, 145.0
    x = resample(excerpt(), RATE, rate)
    rng = np.random.default_rng(9)

    def write(path: Path, seconds: float) -> Path:
        with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
            pos = 0
            while pos < seconds * rate:
                at_snaps = pos == 0 or pos == int((seconds - EXCERPT_SECONDS) * rate)
                block = x if at_snaps else (rng.standard_normal(len(x)) * 0.002).astype(np.float32)
                f.write(np.stack([block, 0.8 * block], axis=1))
                pos += len(block)
        assert abs(sf.info(str(path)).duration - seconds) < 0.01
        return path

    model, settings = load_model(default_model_path()), Settings.load(env_file=None)
    short_peak, _ = _detect_file_peak_mb(write(tmp_path / "short.wav", 20.0), model, settings)
    long = write(tmp_path / "long.wav", tail_at + EXCERPT_SECONDS)
    long_peak, events = _detect_file_peak_mb(long, model, settings)
    times = [e.time for e in events if type(e).__name__ == "SnapEvent"]
    _assert_found(times, EXCERPT_SNAPS, "start of long.wav")
    _assert_found(times, [tail_at + t for t in EXCERPT_SNAPS], "end of long.wav")
    assert long_peak - short_peak < 8, (short_peak, long_peak)


# --- the trainer's data scanning -------------------------------------------------------------------


def test_trainer_data_scan_skips_every_broken_file_by_name(good_files, tmp_path, caplog):
    """The same broken files inside a training data folder: each is skipped with a warning that
    names it (a WAV cut mid-stream too, though libsndfile reads it without error), the good files
    of every format are loaded."""
    import logging
    import shutil

    from trainer.data import load_clip_bank, scan_data

    root = tmp_path / "data"
    (root / "snap").mkdir(parents=True)
    (root / "no_snap").mkdir()
    fixtures = Path(__file__).parent / "fixtures" / "audio"
    for p in sorted((fixtures / "snap").glob("*.flac"))[:4]:
        shutil.copy(p, root / "snap" / p.name)
    for fmt, p in good_files.items():
        shutil.copy(p, root / "no_snap" / p.name)
    broken = []
    for i, (name, make) in enumerate(sorted(BROKEN.items())):
        p = root / ("snap" if i % 2 else "no_snap") / f"bad_{name}"
        p.write_bytes(make())
        broken.append(p)
    full = good_files[Fmt(".wav", "PCM_16")].read_bytes()
    cut = root / "no_snap" / "bad_cut_mid_stream.wav"
    cut.write_bytes(full[: len(full) // 2])
    broken.append(cut)

    with caplog.at_level(logging.WARNING):
        manifest = scan_data(root)
        bank = load_clip_bank(manifest, root, RATE)
    skipped = {Path(rel).name: reason for rel, reason in bank.skipped}
    assert set(skipped) == {p.name for p in broken}, sorted(skipped)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for p in broken:
        assert sum(str(p) in w for w in warnings) == 1, (p.name, warnings)
    assert "truncated" in skipped[cut.name]
    loaded_no_snap = sum(len(v) for v in bank.no_snaps.values())
    assert loaded_no_snap == len(good_files)
    assert sum(len(v) for v in bank.snaps.values()) == 4


# --- `listen --input` on the same broken files -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_replay_source_rejects_or_ends_cleanly_on_broken_files(tmp_path, name):
    """`listen --input`'s file source: an AudioFileError naming the file at start, or a replay
    that ends (with what could be read) instead of raising in the audio thread."""
    import threading

    from snap_mqtt.capture import AudioEnd, BlockQueue
    from snap_mqtt.file_source import FileSource

    p = tmp_path / name
    p.write_bytes(BROKEN[name]())
    q = BlockQueue(maxsize=100000)
    try:
        src = FileSource(p, q, speed=0)
    except AudioFileError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
        return
    src.run(threading.Event())
    items = []
    while (item := q.get(timeout=0.01)) is not None:
        items.append(item)
    assert items and isinstance(items[-1], AudioEnd)
    for block in items[:-1]:
        assert np.all(np.isfinite(block.samples))


def test_listen_input_with_a_lying_header_is_an_error_at_start(tmp_path):
    """Before the fix `listen --input` took a WAV "at 1 Hz" and resampled it x16000 for hours."""
    import sys

    p = tmp_path / "rate1.wav"
    p.write_bytes(_wav_claiming_rate(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAP_")}
    r = subprocess.run([sys.executable, "-m", "snap_mqtt.cli", "listen", "--input", str(p), "--port", "1"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert str(p) in r.stderr and "sample rate 1 Hz" in r.stderr and "Traceback" not in r.stderr
