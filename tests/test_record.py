"""`snap-train record`: a real sounddevice stream from the PulseAudio null sink (fixture clips are
played into it while the recorder runs as a subprocess), real SIGINTs, a real full disk (tmpfs)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snap_mqtt.audio_io import read_audio
from trainer.clipcheck import check_snap_clip
from trainer.record import QUIET_SNAP_DBFS, ClipCutter, allocate, plan_session, quiet_snaps_note

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "audio"
SNAP_TRAIN = [str(Path(sys.executable).with_name("snap-train"))]  # the installed console script
SNAP_CLIP = sorted((FIXTURES / "snap").glob("*.flac"))[0]
DISHES = FIXTURES / "background" / "dishes.flac"


class Proc:
    """A subprocess whose stdout lines are read in the background, so a test can wait for one."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False, preexec=None):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     bufsize=1, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     preexec_fn=preexec)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in {timeout} s; got:\n{''.join(self.seen)}"
                                     f"\nstderr: {self.stderr_now()}") from None
            self.seen.append(line)
            if text in line:
                return line

    def stderr_now(self) -> str:
        return "" if self.proc.poll() is None else self.proc.stderr.read()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        time.sleep(0.05)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return rc, "".join(self.seen), self.proc.stderr.read()


def record(folder: Path, pulse, *more: str) -> Proc:
    return Proc([*SNAP_TRAIN, "record", str(folder), *more], env=pulse.env)


def assert_complete_clips(folder: Path, rate: int, seconds: float) -> list[Path]:
    """Every file in folder is a whole clip with a uuid1 name; no part files."""
    files = sorted(folder.iterdir())
    assert not [p for p in files if p.name.endswith(".part")], files
    clips = [p for p in files if p.is_file()]
    for p in clips:
        assert uuid.UUID(p.stem).version == 1, p.name
        info = sf.info(str(p))
        assert info.samplerate == rate and info.frames == int(round(rate * seconds)) and info.channels == 1, (p, info)
    return clips


# ---------------------------------------------------------------------------------------------
# pure parts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_cutter_loses_no_sample_whatever_the_block_sizes(seed: int):
    rng = np.random.default_rng(seed)
    stream = rng.standard_normal(10_000).astype(np.float32)
    cutter = ClipCutter(clip_frames=1234, channels=1)
    clips, i = [], 0
    while i < len(stream):
        n = int(rng.integers(1, 3000))
        clips += cutter.push(stream[i:i + n, None])
        i += n
    assert [len(c) for c in clips] == [1234] * (10_000 // 1234)
    assert np.array_equal(np.concatenate(clips)[:, 0], stream[: len(clips) * 1234])
    assert cutter.pending_frames == 10_000 % 1234
    assert cutter.discard() == 10_000 % 1234 and cutter.pending_frames == 0


def test_session_plan_adds_up():
    assert allocate(40, [0.3, 0.2, 0.2, 0.15, 0.15]) == [12, 8, 8, 6, 6]
    assert sum(allocate(7, [0.3, 0.2, 0.2, 0.15, 0.15])) == 7
    steps = plan_session(snaps=40, room_seconds=60, clip_seconds=2)
    assert sum(s.clips for s in steps if s.kind == "snap") == 40
    assert sum(s.clips for s in steps if s.kind == "no_snap") == 30
    assert any("clap" in s.prompt for s in steps) and any("double" in s.prompt for s in steps)
    short = plan_session(snaps=2, room_seconds=2, clip_seconds=2)
    assert [(s.kind, s.clips) for s in short] == [("snap", 1), ("snap", 1), ("no_snap", 1)]


def test_clipcheck_on_real_clips():
    """Real snaps placed in 2 s of quiet room noise pass; the same length of running water, a
    clip of a no_snap hum, and silence do not."""
    rng = np.random.default_rng(0)
    snaps = sorted((FIXTURES / "snap").glob("*.flac"))
    passed = 0
    for p in snaps:
        a = read_audio(p, sample_rate=16000)
        x = (rng.standard_normal(32000) * 1e-3).astype(np.float32)
        x[8000:8000 + len(a.samples)] += a.samples
        chk = check_snap_clip(x, 16000)
        if chk.has_snap:
            passed += 1
            assert 7900 <= chk.onset <= 8000 + len(a.samples)
    assert passed >= len(snaps) - 1
    dishes = read_audio(DISHES).samples
    rejected = sum(not check_snap_clip(dishes[i:i + 32000], 16000).has_snap for i in range(0, 96000, 16000))
    assert rejected >= 5
    silent = check_snap_clip(np.zeros(32000, np.float32), 16000)
    assert not silent.has_snap and "silent" in silent.reason


# ---------------------------------------------------------------------------------------------
# recording through PulseAudio


def test_record_clips_from_a_real_stream(tmp_path: Path, pulse):
    out = tmp_path / "clips"
    p = record(out, pulse, "--device", "pulse", "--seconds", "1", "--rate", "16000", "--count", "3")
    p.expect("Ctrl-C to stop")
    player = pulse.play(SNAP_CLIP)
    rc, stdout, stderr = p.finish()
    player.wait(10)
    assert rc == 0, stderr
    clips = assert_complete_clips(out, 16000, 1.0)
    assert len(clips) == 3 and "done: 3 clip(s)" in stdout
    peaks = [float(np.abs(sf.read(str(c), dtype="float32")[0]).max()) for c in clips]
    assert max(peaks) > 0.05, peaks  # the played snap was captured
    # a second run into the same folder adds clips, never overwrites
    p = record(out, pulse, "--seconds", "1", "--rate", "16000", "--count", "1")
    assert p.finish()[0] == 0
    assert len(assert_complete_clips(out, 16000, 1.0)) == 4
    assert {c.name for c in clips} <= {c.name for c in out.iterdir()}


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_leaves_only_complete_files(tmp_path: Path, pulse, presses: int):
    out = tmp_path / "clips"
    p = record(out, pulse, "--seconds", "1", "--rate", "16000")
    p.expect("saved clip 1")
    time.sleep(0.3)  # the next clip is in flight
    for _ in range(presses):
        p.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    rc, stdout, stderr = p.finish(timeout=30)
    assert rc == 0, stderr
    clips = assert_complete_clips(out, 16000, 1.0)
    if presses == 1:  # finish the clip in flight
        assert "finishing the clip in flight" in stdout and len(clips) >= 2
    else:  # discard it
        assert "discarded the clip in flight" in stdout and len(clips) >= 1
    assert f"done: {len(clips)} clip(s)" in stdout


def mount_tmpfs(mnt: Path, size: str) -> bool:
    """Mount a real tmpfs of `size` at mnt; False where mounting is not permitted (no CAP_SYS_ADMIN)."""
    mnt.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True).returncode == 0


def test_disk_full_leaves_no_truncated_file(tmp_path: Path, pulse):
    """A real 200 KiB tmpfs: two 1 s clips at 44.1 kHz (88 KB each) fit, the third does not."""
    mnt = tmp_path / "small-disk"
    if not mount_tmpfs(mnt, "200k"):
        return check_write_failure_without_mount(tmp_path, pulse)
    try:
        p = record(mnt, pulse, "--seconds", "1", "--rate", "44100", "--count", "5")
        rc, stdout, stderr = p.finish()
        assert rc == 2
        assert "disk full" in stderr and "No space left on device" in stderr and "Traceback" not in stderr
        clips = assert_complete_clips(mnt, 44100, 1.0)
        assert len(clips) == 2, (stdout, stderr)
        for c in clips:
            assert sf.read(str(c))[0].shape == (44100,)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def check_write_failure_without_mount(tmp_path: Path, pulse) -> None:
    """Where mounting is not permitted: a real refused write another way. A file-size limit
    (RLIMIT_FSIZE, SIGXFSZ ignored) below one clip's size makes the kernel fail the write (EFBIG)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    out = tmp_path / "limited"
    p = Proc([*SNAP_TRAIN, "record", str(out), "--seconds", "1", "--rate", "44100", "--count", "3"],
             env=pulse.env, preexec=limit)
    rc, stdout, stderr = p.finish()
    assert rc == 2
    assert "cannot write" in stderr and "File too large" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []  # no clip, no part file


def test_write_failure_leaves_no_truncated_file(tmp_path: Path, pulse):
    """The fallback above, run everywhere so it is known to work where it is needed."""
    check_write_failure_without_mount(tmp_path, pulse)


def test_missing_device_lists_the_inputs(tmp_path: Path, pulse):
    r = subprocess.run([*SNAP_TRAIN, "record", str(tmp_path / "x"), "--device", "no such mic"],
                       capture_output=True, text=True, env=pulse.env, timeout=120)
    assert r.returncode == 2
    assert "'no such mic' not found" in r.stderr and "Available input devices" in r.stderr
    assert "pulse" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_guided_session_sorts_and_flags(tmp_path: Path, pulse):
    """Snap step 1: a real snap is played. Snap step 2: only running water (the user did not snap):
    flagged into review/. Room step: saved as no_snap."""
    out = tmp_path / "me"
    p = record(out, pulse, "--guided", "--yes", "--countdown", "0", "--snaps", "2", "--room-seconds", "2",
               "--seconds", "2", "--rate", "16000")
    p.expect("[1/3] SNAP now")
    players = [pulse.play(SNAP_CLIP)]
    p.expect("[2/3] SNAP-SNAP now")
    players.append(pulse.play(DISHES))
    p.expect("[3/3]")
    rc, stdout, stderr = p.finish()
    for pl in players:
        pl.terminate()
        pl.wait(10)
    assert rc == 0, stderr
    snap = assert_complete_clips(out / "snap", 16000, 2.0)
    review = assert_complete_clips(out / "review", 16000, 2.0)
    room = assert_complete_clips(out / "no_snap", 16000, 2.0)
    assert (len(snap), len(review), len(room)) == (1, 1, 1), stdout
    assert "flagged for review" in stdout and "NOT trained on" in stdout
    x, rate = sf.read(str(snap[0]), dtype="float32")
    assert check_snap_clip(x, rate).has_snap
    log = json.loads(next(out.glob("guided-session-*.json")).read_text())
    assert [c["has_snap"] for c in log["clips"] if c["kind"] == "snap"] == [True, False]
    assert log["clips"][1]["file"] == f"review/{review[0].name}"
    # the snap's peak as recorded: printed, logged, and the clip's own first 50 ms after its onset
    on = check_snap_clip(x, rate).onset
    assert log["clips"][0]["peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(x[on:on + rate // 20]).max()), abs=0.1)
    assert f"peak {log['clips'][0]['peak_dbfs']:.0f} dBFS" in stdout
    assert ("your snaps peak at" in stdout) == (log["clips"][0]["peak_dbfs"] < QUIET_SNAP_DBFS)


def test_quiet_snaps_note_only_when_most_snaps_are_quiet():
    assert quiet_snaps_note([]) is None
    assert quiet_snaps_note([-6.0, -12.0, -30.0]) is None
    note = quiet_snaps_note([-35.0, -28.0, -6.0])
    assert note is not None and "-28 dBFS" in note and "median of 3" in note and "--quietest-gain" in note


def test_clipcheck_flags_a_snap_cut_off_at_the_clip_end():
    a = read_audio(SNAP_CLIP, sample_rate=16000).samples
    onset = check_snap_clip(a, 16000).onset
    x = np.zeros(32000, np.float32)
    x += np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 1e-3
    start = 32000 - 320 - onset  # the snap begins 20 ms before the end
    x[start:] += a[: 32000 - start]
    chk = check_snap_clip(x, 16000)
    assert not chk.has_snap and "cut off" in chk.reason


def test_guided_session_answers_its_prompts(tmp_path: Path, pulse):
    """Without --yes each step waits for an answer: Enter starts it, s skips it, q ends the session."""
    out = tmp_path / "me"
    p = Proc([*SNAP_TRAIN, "record", str(out), "--guided", "--countdown", "1", "--snaps", "2",
              "--room-seconds", "1.5", "--seconds", "1.5", "--rate", "16000"], env=pulse.env, stdin=True)
    p.proc.stdin.write("\ns\nq\n")
    p.proc.stdin.flush()
    p.expect("[1/3] SNAP now")
    player = pulse.play(SNAP_CLIP)
    rc, stdout, stderr = p.finish()
    player.wait(10)
    assert rc == 0, stderr
    assert "Step 2/3: double snaps" in stdout and "Step 3/3" in stdout and "[2/3]" not in stdout
    assert len(assert_complete_clips(out / "snap", 16000, 1.5)) == 1
    assert not list((out / "no_snap").iterdir()) and not list((out / "review").iterdir())


def test_consecutive_clips_have_no_gap(tmp_path: Path, pulse):
    """Speech played into the sink while 1 s clips are recorded: put back together, the clips line up
    with the played file at one single offset (a gap or an overlap between clips would shift it)."""
    from scipy.signal import correlate

    speech = FIXTURES / "background" / "speech.flac"
    out = tmp_path / "clips"
    p = record(out, pulse, "--seconds", "1", "--rate", "16000", "--count", "4")
    p.expect("Ctrl-C to stop")
    player = pulse.play(speech)
    rc, stdout, stderr = p.finish()
    player.terminate()
    player.wait(10)
    assert rc == 0, stderr
    clips = sorted(out.iterdir(), key=lambda c: uuid.UUID(c.stem).time)  # uuid1: recording order
    y = np.concatenate([sf.read(str(c), dtype="float32")[0] for c in clips])
    x = np.concatenate([np.zeros(5 * 16000, np.float32), sf.read(str(speech), dtype="float32")[0]])
    lag = int(np.argmax(correlate(x, y, mode="valid")))
    lags = []
    for k in range(4):
        seg = y[k * 16000:(k + 1) * 16000]
        if np.abs(seg).max() < 0.01:
            continue  # before the speech started
        lo = lag + k * 16000 - 800
        c = correlate(x[lo:lo + 16000 + 1600], seg, mode="valid")
        j = int(np.argmax(c))
        ref = x[lo + j:lo + j + 16000]
        assert c[j] / np.sqrt((seg ** 2).sum() * (ref ** 2).sum()) > 0.9
        lags.append(lo + j - k * 16000)
    assert len(lags) >= 2 and len(set(lags)) == 1, lags


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.lists(st.floats(0.01, 10), min_size=1, max_size=8))
def test_allocate_is_proportional_and_exact(total: int, weights: list[float]):
    parts = allocate(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    for p, w in zip(parts, weights):
        assert abs(p - total * w / sum(weights)) < 1 + 1e-9
