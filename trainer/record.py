"""`snap-train record DIR`: record fixed-length clips from a microphone, continuously.

One continuous input stream feeds every clip (its callback only copies blocks into a queue), so
there are no gaps between clips. Each clip is named by uuid1 (a restart never overwrites) and written
under a temporary name, synced, then renamed: a full disk, a crash or Ctrl-C never leaves a truncated
file under a clip's name.

`--guided` runs a short enrollment session (issue 6): it prompts for snaps (singles, doubles, near,
far, soft, loud) and for room sound and look-alikes (talk, claps, knocks, typing, a door), writes
into DIR/snap and DIR/no_snap, and checks every snap clip for a snap: a clip without one goes to
DIR/review (not trained on) and is reported.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import os
import queue
import re
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from trainer.fsutil import fsync_dir as _fsync_dir

from trainer.cli import UsageError

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}
_PART_RE = re.compile(r"^\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(wav|flac)\.part$")
NO_AUDIO_TIMEOUT = 5.0  # seconds without a block from the device: it is gone or stuck


class RecordError(Exception):
    """Recording cannot go on (disk full, device lost). The message says why and what was kept."""


# ---------------------------------------------------------------------------------------------
# arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path, help="folder the clips are written into (created)")
    parser.add_argument("--device", help="input device: index or (part of) its name, as `snap-mqtt devices` "
                                         "lists them; default: the system's default input")
    parser.add_argument("--rate", type=int, default=None,
                        help="sample rate in Hz (default: the device's own rate)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each clip (default 2)")
    parser.add_argument("--channels", type=int, default=1, help="channels to record (default 1)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="wav",
                        help="file format, 16-bit (default wav)")
    parser.add_argument("--count", type=int, default=0,
                        help="stop after this many clips (default 0: until Ctrl-C)")
    g = parser.add_argument_group("guided session (--guided)")
    g.add_argument("--guided", action="store_true",
                   help="prompted session: snaps into DIR/snap, room sound into DIR/no_snap, "
                        "snap clips without a snap into DIR/review")
    g.add_argument("--snaps", type=int, default=40, help="snap clips to ask for (default 40)")
    g.add_argument("--room-seconds", type=float, default=60.0,
                   help="seconds of room sound and look-alikes to ask for (default 60)")
    g.add_argument("--countdown", type=int, default=3, help="countdown before each step, seconds (default 3)")
    g.add_argument("--yes", action="store_true",
                   help="do not wait for Enter before each step (non-interactive sessions)")


# ---------------------------------------------------------------------------------------------
# pure parts: cutting a stream into clips, planning a guided session


class ClipCutter:
    """Cuts a stream of blocks ([frames, channels]) into clips of exactly `clip_frames` frames."""

    def __init__(self, clip_frames: int, channels: int):
        self.clip_frames = clip_frames
        self.channels = channels
        self._parts: list[np.ndarray] = []
        self._have = 0

    @property
    def pending_frames(self) -> int:
        return self._have

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        block = np.asarray(block, dtype=np.float32).reshape(-1, self.channels)
        out: list[np.ndarray] = []
        while len(block):
            take = min(len(block), self.clip_frames - self._have)
            self._parts.append(block[:take])
            self._have += take
            block = block[take:]
            if self._have == self.clip_frames:
                out.append(np.concatenate(self._parts))
                self._parts, self._have = [], 0
        return out

    def discard(self) -> int:
        """Drop the clip in flight; returns how many frames were dropped."""
        n = self._have
        self._parts, self._have = [], 0
        return n


@dataclass(frozen=True)
class Step:
    kind: str  # "snap" or "no_snap"
    prompt: str
    clips: int


SNAP_STEPS: tuple[tuple[str, float], ...] = (
    ("single snaps at your usual distance from the microphone", 0.30),
    ("double snaps (snap-snap, quickly)", 0.20),
    ("snaps from far away (across the room)", 0.20),
    ("soft, quiet snaps", 0.15),
    ("loud snaps, close to the microphone", 0.15),
)
ROOM_STEPS: tuple[tuple[str, float], ...] = (
    ("your room's ordinary sound: talk, move around, NO snap", 0.35),
    ("clap your hands, NO snap", 0.15),
    ("knock on a table, tap your fingers, NO snap", 0.15),
    ("type on a keyboard, click a mouse, NO snap", 0.15),
    ("a door, a drawer, put things down, NO snap", 0.20),
)


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split `total` into integer parts proportional to `weights` (largest remainder, ties to the
    earlier part), so the parts always add up to `total`."""
    if total <= 0:
        return [0] * len(weights)
    s = sum(weights)
    raw = [total * w / s for w in weights]
    parts = [int(math.floor(r)) for r in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def plan_session(snaps: int, room_seconds: float, clip_seconds: float) -> list[Step]:
    room_clips = math.ceil(room_seconds / clip_seconds - 1e-9) if room_seconds > 0 else 0
    steps: list[Step] = []
    for (prompt, _), n in zip(SNAP_STEPS, allocate(snaps, [w for _, w in SNAP_STEPS])):
        if n:
            steps.append(Step("snap", prompt, n))
    for (prompt, _), n in zip(ROOM_STEPS, allocate(room_clips, [w for _, w in ROOM_STEPS])):
        if n:
            steps.append(Step("no_snap", prompt, n))
    return steps


# ---------------------------------------------------------------------------------------------
# files


def new_clip_path(folder: Path, fmt: str) -> Path:
    """A fresh uuid1 name that does not exist yet (uuid1 already never repeats on one machine)."""
    while True:
        p = folder / f"{uuid.uuid1()}.{fmt}"
        if not p.exists():
            return p


def write_clip(path: Path, clip: np.ndarray, sample_rate: int, fmt: str) -> Path:
    """Encode in memory, write to `.NAME.part`, fsync, rename to NAME. On any failure (ENOSPC
    included) the part file is removed and nothing appears under NAME."""
    import soundfile as sf

    major, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(clip, -1.0, 1.0), sample_rate, format=major, subtype=subtype)
    data = buf.getvalue()
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # never overwrite (cannot happen with uuid1 names; belt and braces)
            raise FileExistsError(f"{path}: already exists, not overwritten")
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_parts(folder: Path) -> list[Path]:
    """Part files a killed recorder left behind are incomplete by construction: remove them."""
    gone = []
    if folder.is_dir():
        for p in folder.iterdir():
            if _PART_RE.match(p.name):
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def _disk_error(exc: OSError, folder: Path, saved: int) -> RecordError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "disk full"
    else:
        why = "cannot write"
    return RecordError(f"{folder}: {why} ({exc.strerror or exc}); stopped after {saved} complete clip(s), "
                       f"the clip in flight was not saved (no partial file left)")


# ---------------------------------------------------------------------------------------------
# devices


def input_devices(sd: Any) -> list[tuple[int, dict]]:
    return [(i, d) for i, d in enumerate(sd.query_devices()) if d.get("max_input_channels", 0) > 0]


def describe_inputs(sd: Any) -> str:
    lines = [f"  {i:>3}  {d['name']}  ({d['max_input_channels']} in, {int(d['default_samplerate'])} Hz)"
             for i, d in input_devices(sd)]
    return "\n".join(lines) if lines else "  (none: no microphone or sound server found)"


def resolve_input_device(sd: Any, spec: str | None) -> int | None:
    """`--device` (index or name, case-insensitive; an exact name wins over a partial match) -> index.
    None means the system default. A missing device raises UsageError listing the inputs."""
    inputs = input_devices(sd)
    if spec is None:
        if not inputs:
            raise UsageError("no audio input devices found. Available input devices:\n" + describe_inputs(sd))
        return None
    spec = spec.strip()
    if spec.lstrip("-").isdigit():
        idx = int(spec)
        if any(i == idx for i, _ in inputs):
            return idx
        raise UsageError(f"input device {idx} not found (or it has no input channels). "
                         f"Available input devices:\n{describe_inputs(sd)}")
    exact = [i for i, d in inputs if d["name"].lower() == spec.lower()]
    if exact:
        return exact[0]
    partial = [i for i, d in inputs if spec.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise UsageError(f"input device name {spec!r} is ambiguous; use an index. "
                         f"Available input devices:\n{describe_inputs(sd)}")
    raise UsageError(f"input device {spec!r} not found. Available input devices:\n{describe_inputs(sd)}")


def _import_sounddevice() -> Any:
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise UsageError(f"audio input unavailable: {exc} (install libportaudio2: scripts/setup.sh)") from None
    return sd


# ---------------------------------------------------------------------------------------------
# the stream


class Interrupts:
    """SIGINT/SIGTERM as a counter instead of an exception, so a write is never cut in half.
    First Ctrl-C: finish the clip in flight, then stop. Second (or SIGTERM): discard it and stop.
    While waiting for the user to press Enter, Ctrl-C raises KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.count = 0
        self.terminate = False
        self.waiting_input = False
        self._announced = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Interrupts":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if signum == signal.SIGTERM:
            self.terminate = True
        if self.waiting_input:
            raise KeyboardInterrupt
        # no printing here: the handler may interrupt a print in progress (a reentrant write fails)

    def announce(self) -> None:
        """Say once, from the main loop, what the first Ctrl-C does."""
        if self.count == 1 and not self.terminate and not self._announced:
            self._announced = True
            _say("\nCtrl-C: finishing the clip in flight (Ctrl-C again to discard it)")

    @property
    def finish(self) -> bool:
        return self.count >= 1

    @property
    def discard(self) -> bool:
        return self.count >= 2 or self.terminate


class Capture:
    """One continuous sounddevice InputStream; the callback only copies blocks into a queue."""

    def __init__(self, sd: Any, device: int | None, rate: int, channels: int):
        self.sd = sd
        self.device = device
        self.rate = rate
        self.channels = channels
        self.q: queue.Queue[np.ndarray] = queue.Queue()
        self.overflows = 0
        self.stream: Any = None
        self.last_block = time.monotonic()

    def _callback(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self.q.put(indata.copy())

    def __enter__(self) -> "Capture":
        name = "the default input" if self.device is None else f"input device {self.device}"
        try:
            self.stream = self.sd.InputStream(device=self.device, samplerate=self.rate, channels=self.channels,
                                              dtype="float32", callback=self._callback)
            self.stream.start()
        except Exception as exc:  # PortAudioError, ValueError (bad channels/rate)
            raise UsageError(f"cannot open {name} at {self.rate} Hz, {self.channels} channel(s): {exc}. "
                             f"Available input devices:\n{describe_inputs(self.sd)}") from None
        self.last_block = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            try:
                self.stream.stop()
                self.stream.close()
            except Exception:
                pass

    def blocks(self, timeout: float = 0.1) -> Iterator[np.ndarray | None]:
        """Blocks as they arrive; None every `timeout` without one (so callers can check for Ctrl-C)."""
        while True:
            try:
                block = self.q.get(timeout=timeout)
            except queue.Empty:
                if time.monotonic() - self.last_block > NO_AUDIO_TIMEOUT:
                    raise RecordError(f"the input device delivered no audio for {NO_AUDIO_TIMEOUT:.0f} s "
                                      f"(unplugged or stuck?)") from None
                yield None
                continue
            self.last_block = time.monotonic()
            yield block

    def drain(self) -> None:
        """Forget what is queued, so the next clip starts now."""
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return


def _say(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stdout, flush=True)


def _level_db(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20 * math.log10(max(peak, 1e-6))


# the default model's training snaps peak within 18 dB of full scale, and it finds fewer snaps that
# arrive quieter (model card: recall 0.84 at 20-30 dB below full scale, 0.74 at 30-40)
QUIET_SNAP_DBFS = -20.0


def quiet_snaps_note(peaks_dbfs: list[float]) -> str | None:
    """What to tell a user whose snap clips are mostly quiet (median peak under QUIET_SNAP_DBFS)."""
    if not peaks_dbfs:
        return None
    median = float(np.median(peaks_dbfs))
    if median >= QUIET_SNAP_DBFS:
        return None
    return (f"your snaps peak at {median:.0f} dBFS (median of {len(peaks_dbfs)}): the default model was trained "
            f"on snaps within 18 dB of full scale and finds fewer quieter ones. Raise the microphone's input "
            f"gain or snap nearer to it; `snap-train enroll` with these clips teaches it your snaps down to "
            f"36 dB below full scale (`--quietest-gain`), so record your room's knocks and claps as well.")


def record_clip(cap: Capture, cutter: ClipCutter, stop: Interrupts,
                progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Collect exactly one clip from the stream; None when it was discarded (second Ctrl-C)."""
    for block in cap.blocks():
        stop.announce()
        if stop.discard:
            cutter.discard()
            return None
        if block is None:
            continue
        clips = cutter.push(block)
        if progress:
            progress(cutter.pending_frames)
        if clips:
            # the rest of this block belongs to the next clip; in continuous mode it stays in the cutter
            return clips[0]
    return None  # pragma: no cover  (blocks() never ends)


# ---------------------------------------------------------------------------------------------
# run


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise UsageError(f"--seconds must be positive (got {args.seconds})")
    if args.channels < 1:
        raise UsageError(f"--channels must be at least 1 (got {args.channels})")
    if args.guided and args.snaps < 0:
        raise UsageError("--snaps must not be negative")
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder")
    sd = _import_sounddevice()
    device = resolve_input_device(sd, args.device)
    try:
        info = sd.query_devices(device if device is not None else sd.default.device[0], "input")
    except Exception as exc:  # no default input configured (index -1), or it vanished
        raise UsageError(f"no usable default input ({exc}); pick one with --device. "
                         f"Available input devices:\n{describe_inputs(sd)}") from None
    rate = int(args.rate or info["default_samplerate"])
    if rate <= 0:
        raise UsageError(f"--rate must be positive (got {rate})")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ([folder, folder / "snap", folder / "no_snap", folder / "review"] if args.guided else [folder]):
        for p in remove_stale_parts(sub):
            _say(f"removed an incomplete part file a killed recording left behind: {p}")
    _say(f"recording from {info['name']!r} at {rate} Hz, {args.channels} channel(s), "
         f"{args.seconds:g} s clips into {folder}")
    try:
        with Interrupts() as stop, Capture(sd, device, rate, args.channels) as cap:
            if args.guided:
                return _run_guided(args, cap, stop, folder, rate)
            return _run_continuous(args, cap, stop, folder, rate)
    except RecordError as exc:
        raise UsageError(str(exc)) from None


def _run_continuous(args: argparse.Namespace, cap: Capture, stop: Interrupts, folder: Path, rate: int) -> int:
    clip_frames = int(round(args.seconds * rate))
    cutter = ClipCutter(clip_frames, args.channels)
    saved = 0
    tty = sys.stdout.isatty()
    _say("Ctrl-C to stop (the clip in flight is finished; Ctrl-C twice discards it)")

    def progress(pending: int) -> None:
        if tty:
            bar = int(20 * pending / clip_frames)
            _say(f"\r  clip {saved + 1}: [{'#' * bar}{'-' * (20 - bar)}] {pending / rate:4.1f}/{args.seconds:g} s",
                 end="")

    while True:
        clip = record_clip(cap, cutter, stop, progress)
        if clip is None:
            _say("\ndiscarded the clip in flight")
            break
        path = new_clip_path(folder, args.format)
        try:
            write_clip(path, clip, rate, args.format)
        except OSError as exc:
            raise _disk_error(exc, folder, saved) from None
        saved += 1
        _say(f"{chr(13) if tty else ''}saved clip {saved}: {path.name}  ({len(clip) / rate:.2f} s, "
             f"peak {_level_db(clip):.0f} dBFS)" + (" " * 10 if tty else ""))
        if (args.count and saved >= args.count) or stop.finish:
            break
    if cap.overflows:
        _say(f"warning: {cap.overflows} input overflow(s): the machine was too slow, some audio was dropped")
    _say(f"done: {saved} clip(s) in {folder}")
    return 0


@dataclass
class SessionLog:
    started: str
    sample_rate: int
    seconds: float
    device: str
    clips: list[dict] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        stamp = self.started.replace(":", "").replace("-", "")[:15]
        path = folder / f"guided-session-{stamp}.json"
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)  # our own log of this session: rewritten as it grows
        return path


def _run_guided(args: argparse.Namespace, cap: Capture, stop: Interrupts, folder: Path, rate: int) -> int:
    from trainer.clipcheck import check_snap_clip

    steps = plan_session(args.snaps, args.room_seconds, args.seconds)
    if not steps:
        raise UsageError("nothing to record: --snaps 0 and --room-seconds 0")
    clip_frames = int(round(args.seconds * rate))
    for sub in ("snap", "no_snap", "review"):
        (folder / sub).mkdir(exist_ok=True)
    log = SessionLog(started=datetime.now(timezone.utc).isoformat(timespec="seconds"), sample_rate=rate,
                     seconds=args.seconds, device=str(args.device or "default"))
    counts = {"snap": 0, "no_snap": 0, "review": 0}
    flagged: list[str] = []
    snap_peaks: list[float] = []
    total = sum(s.clips for s in steps)
    _say(f"Guided session: {sum(s.clips for s in steps if s.kind == 'snap')} snap clips, "
         f"{sum(s.clips for s in steps if s.kind == 'no_snap')} room clips ({total * args.seconds:.0f} s). "
         f"One snap per clip when asked to snap (a double snap for the double step).")
    done = 0
    try:
        for n, step in enumerate(steps, 1):
            if stop.finish:
                break
            _say(f"\nStep {n}/{len(steps)}: {step.prompt}  ({step.clips} clip(s) of {args.seconds:g} s)")
            if not args.yes:
                stop.waiting_input = True
                try:
                    answer = input("  press Enter to start, s to skip this step, q to finish: ").strip().lower()
                except EOFError:
                    answer = "q"
                finally:
                    stop.waiting_input = False
                if answer == "q":
                    break
                if answer == "s":
                    continue
            for c in range(args.countdown, 0, -1):
                _say(f"  {c}...", end="")
                time.sleep(1)
                if stop.finish:
                    break
            if args.countdown:
                _say("")
            cap.drain()  # start from now: nothing heard during the prompt or countdown
            cutter = ClipCutter(clip_frames, args.channels)
            for k in range(1, step.clips + 1):
                if stop.finish:
                    break
                cue = "SNAP now" if step.kind == "snap" else "go on"
                if "double" in step.prompt and step.kind == "snap":
                    cue = "SNAP-SNAP now"
                _say(f"  [{done + 1}/{total}] {cue}  (clip {k}/{step.clips})")
                clip = record_clip(cap, cutter, stop)
                if clip is None:
                    _say("  discarded the clip in flight")
                    break
                entry: dict[str, Any] = {"step": step.prompt, "kind": step.kind}
                dest = step.kind
                if step.kind == "snap":
                    mono = clip.mean(axis=1)
                    chk = check_snap_clip(mono, rate)
                    entry.update(has_snap=chk.has_snap, onset_seconds=chk.onset_seconds(rate),
                                 prominence_db=round(chk.prominence_db, 1))
                    if not chk.has_snap:
                        dest = "review"
                        entry["reason"] = chk.reason
                    elif chk.onset is not None:  # the snap's own peak: its first 50 ms
                        entry["peak_dbfs"] = round(_level_db(mono[chk.onset:chk.onset + rate // 20]), 1)
                        snap_peaks.append(entry["peak_dbfs"])
                path = new_clip_path(folder / dest, args.format)
                try:
                    write_clip(path, clip, rate, args.format)
                except OSError as exc:
                    raise _disk_error(exc, folder / dest, sum(counts.values())) from None
                counts[dest] += 1
                done += 1
                entry["file"] = str(path.relative_to(folder))
                log.clips.append(entry)
                if dest == "review":
                    flagged.append(entry["file"])
                    _say(f"    no snap heard: {entry['reason']} -> {entry['file']} (flagged for review, "
                         f"not trained on)")
                elif step.kind == "snap":
                    peak = f", peak {entry['peak_dbfs']:.0f} dBFS" if "peak_dbfs" in entry else ""
                    _say(f"    snap at {entry['onset_seconds']:.2f} s{peak} -> {entry['file']}")
                else:
                    _say(f"    saved {entry['file']}")
    except KeyboardInterrupt:
        _say("\nstopped")
    finally:
        if log.clips:
            log_path = log.write(folder)
            _say(f"session log: {log_path}")
    _say(f"\ndone: {counts['snap']} snap clip(s) in {folder / 'snap'}, {counts['no_snap']} room clip(s) in "
         f"{folder / 'no_snap'}, {counts['review']} flagged in {folder / 'review'}")
    if flagged:
        _say(f"{len(flagged)} 'snap' clip(s) had no snap in them and are NOT trained on:")
        for f in flagged:
            _say(f"  {f}")
        _say(f"listen to them and sort them with: snap-train label {folder / 'review'} --out {folder}")
    note = quiet_snaps_note(snap_peaks)
    if note:
        _say(note)
    if cap.overflows:
        _say(f"warning: {cap.overflows} input overflow(s): some audio was dropped")
    return 0
