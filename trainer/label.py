"""`snap-train label DIR`: sort unlabelled clips into snap/ and no_snap/, by ear or by a model.

Interactive mode plays each clip and reads one key: s snap, n not snap, k skip, r replay, u undo,
q quit. `--auto` scores each clip with a model (the highest probability over windows slid across the
clip at the model's hop) and moves only confident clips, leaving the uncertain ones for you.

No clip is ever lost or overwritten. Every move is first written to a journal in DIR
(`.snap-label-journal.jsonl`, fsynced), then done without ever replacing a file (a hard link to a
fresh name, then the old name removed; a synced copy across filesystems), then marked done. A run
that was killed anywhere in between finds the unfinished entry next time and completes it; undo
(`u`, or `--undo N`) walks the same journal back, across restarts.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from trainer.fsutil import fsync_dir as _fsync_dir

from trainer.cli import UsageError

JOURNAL_NAME = ".snap-label-journal.jsonl"
LABELS = ("snap", "no_snap")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")
TEST_PAUSE_ENV = "SNAP_TRAIN_TEST_PAUSE"  # test-only: "after-journal" or "mid-move" pauses there


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path,
                        help="folder of unlabelled clips (its audio files, not its subfolders)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where snap/ and no_snap/ go (default: DIR itself)")
    parser.add_argument("--auto", action="store_true", help="let a model sort the confident clips")
    parser.add_argument("--model", type=Path, default=None,
                        help="model file for --auto (default: the shipped models/snap-default.pt)")
    # 0.99: on the shipped data's held-out clips, 98 % of the clips the default model puts at or
    # above it are snaps (79 % at 0.9: many no_snap windows hold part of a transient at an edge)
    parser.add_argument("--snap-above", type=float, default=0.99,
                        help="--auto: a clip scoring at least this is a snap (default 0.99)")
    parser.add_argument("--no-snap-below", type=float, default=0.1,
                        help="--auto: a clip scoring at most this is not a snap (default 0.1)")
    parser.add_argument("--undo", type=int, default=0, metavar="N",
                        help="undo the last N moves recorded in DIR's journal, then stop")
    parser.add_argument("--device", default=None,
                        help="output device to play clips on (index or name; default: system default)")
    parser.add_argument("--no-play", action="store_true", help="do not play clips (show their numbers only)")


# ---------------------------------------------------------------------------------------------
# the journal and safe moves


class LabelError(Exception):
    """A clip could not be moved safely; nothing was lost (the message says where it is)."""


@dataclass(frozen=True)
class Move:
    seq: int
    op: str  # "move" (labelling) or "undo"
    src: Path
    dst: Path
    label: str = ""
    of: int | None = None  # the move an undo reverses


def unique_path(folder: Path, name: str) -> Path:
    """folder/name, or folder/stem-1.ext, stem-2.ext... whichever does not exist yet."""
    p = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 0
    while p.exists() or p.with_name(f".{p.name}.part").exists():
        n += 1
        p = folder / f"{stem}-{n}{suffix}"
    return p


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Ctrl-C waits until a move is complete (a kill -9 cannot be blocked: the journal covers that)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _test_pause(point: str) -> None:
    if os.environ.get(TEST_PAUSE_ENV) == point:
        print(f"TEST-PAUSE {point}", flush=True)
        time.sleep(600)


def _same_content(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def move_no_replace(src: Path, dst: Path) -> None:
    """Move src to dst, never replacing an existing dst. A hard link then unlink within a filesystem
    (both names exist for a moment, never neither); across filesystems a synced copy under a part
    name, linked into place, then the source removed."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # raises FileExistsError instead of replacing
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            _copy_no_replace(src, dst)
        elif exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            # a filesystem without hard links (FAT, some network mounts): check, then rename
            if dst.exists():
                raise FileExistsError(errno.EEXIST, "exists, not overwritten", str(dst)) from None
            os.rename(src, dst)
            _fsync_dir(dst.parent)
            _fsync_dir(src.parent)
            return
        else:
            raise
    _fsync_dir(dst.parent)
    _test_pause("mid-move")
    os.unlink(src)
    _fsync_dir(src.parent)


def _copy_no_replace(src: Path, dst: Path) -> None:
    part = dst.with_name(f".{dst.name}.part")
    try:
        with open(src, "rb") as fi, open(part, "xb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        os.link(part, dst)
    finally:
        part.unlink(missing_ok=True)


class Journal:
    """Append-only JSON lines: an intent {seq, op, src, dst, ...} before a move, {seq, op: done} after.
    Paths are stored relative to the journal's folder, so the data folder may be moved as a whole."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / JOURNAL_NAME
        self.intents: dict[int, Move] = {}
        self.done: set[int] = set()
        self.abandoned: set[int] = set()
        self.bad_lines = 0
        self._load()

    def _rel(self, p: Path) -> str:
        return os.path.relpath(p, self.folder)

    def _abs(self, s: str) -> Path:
        return Path(os.path.normpath(self.folder / s))

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                e = json.loads(line)
                seq = int(e["seq"])
                if e["op"] == "done":
                    self.done.add(seq)
                elif e["op"] == "abandoned":
                    self.abandoned.add(seq)
                else:
                    self.intents[seq] = Move(seq, e["op"], self._abs(e["src"]), self._abs(e["dst"]),
                                             e.get("label", ""), e.get("of"))
            except (ValueError, KeyError, TypeError):
                # a line half-written when the machine lost power: its move never started
                self.bad_lines += 1

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")  # after a torn last line, start a fresh one
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def next_seq(self) -> int:
        return max([*self.intents, *self.done, *self.abandoned, 0]) + 1

    def perform(self, op: str, src: Path, dst_folder: Path, label: str = "", of: int | None = None,
                name: str | None = None, **extra: Any) -> Move:
        """Journal the intent, move without replacing, journal completion. Returns the move made."""
        with _signals_blocked():
            dst = unique_path(dst_folder, name or src.name)
            m = Move(self.next_seq(), op, src, dst, label, of)
            entry = {"seq": m.seq, "op": op, "src": self._rel(src), "dst": self._rel(dst),
                     "t": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
            if label:
                entry["label"] = label
            if of is not None:
                entry["of"] = of
            self._append(entry)
            self.intents[m.seq] = m
            _test_pause("after-journal")
            try:
                move_no_replace(src, dst)
            except OSError as exc:
                self._append({"seq": m.seq, "op": "abandoned", "why": str(exc)})
                self.abandoned.add(m.seq)
                raise LabelError(f"{src}: could not move it to {dst} ({exc.strerror or exc}); "
                                 f"it is still at {src}") from None
            self._append({"seq": m.seq, "op": "done"})
            self.done.add(m.seq)
            return m

    def recover(self) -> list[str]:
        """Finish what a killed run left half done. Returns one message per repaired entry."""
        notes = []
        for seq in sorted(self.intents):
            if seq in self.done or seq in self.abandoned:
                continue
            m = self.intents[seq]
            with _signals_blocked():
                src_ok, dst_ok = m.src.exists(), m.dst.exists()
                part = m.dst.with_name(f".{m.dst.name}.part")
                part.unlink(missing_ok=True)  # an unfinished cross-filesystem copy; the source is intact
                if dst_ok and src_ok and _same_content(m.src, m.dst):
                    os.unlink(m.src)  # killed between link and unlink
                    _fsync_dir(m.src.parent)
                    notes.append(f"finished an interrupted move: {m.src.name} -> {m.dst}")
                elif dst_ok and not src_ok:
                    notes.append(f"an interrupted move had completed: {m.dst}")
                elif src_ok and not dst_ok:
                    move_no_replace(m.src, m.dst)  # the decision was made; carry it out
                    notes.append(f"carried out an interrupted move: {m.src.name} -> {m.dst}")
                else:
                    self._append({"seq": seq, "op": "abandoned",
                                  "why": "source and destination both present and different, or both gone"})
                    self.abandoned.add(seq)
                    notes.append(f"journal entry {seq} ({m.src} -> {m.dst}) could not be resumed; "
                                 f"left both names as they are")
                    continue
                self._append({"seq": seq, "op": "done"})
                self.done.add(seq)
        return notes

    def undo_stack(self) -> list[Move]:
        """Completed labelling moves not yet undone, oldest first."""
        undone = {m.of for m in self.intents.values() if m.op == "undo" and m.seq in self.done}
        return [m for s, m in sorted(self.intents.items())
                if m.op == "move" and s in self.done and s not in undone]

    def undo_last(self) -> Move | None:
        """Put the last labelled clip back where it came from (a new name if that one is taken)."""
        stack = self.undo_stack()
        if not stack:
            return None
        last = stack[-1]
        if not last.dst.exists():
            raise LabelError(f"cannot undo: {last.dst} is no longer there (moved or deleted by hand)")
        return self.perform("undo", last.dst, last.src.parent, of=last.seq, name=last.src.name)


# ---------------------------------------------------------------------------------------------
# clips


def unlabelled_clips(folder: Path, out: Path) -> list[Path]:
    """Audio files directly in `folder` (hidden and part files excluded), in name order."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))


def clip_score(model: Any, x: np.ndarray) -> float:
    """Highest snap probability over windows slid across the clip at the model's hop. The clip is
    padded so that a snap anywhere in it, even at its very edges, can fall where the model's positive
    windows put a snap's onset ([onset_min, onset_max] samples into the window). Mirror padding, not
    silence: a step from digital silence into room noise looks like a transient to the model (on the
    fixture clips, zero padding scored half the no_snap clips above 0.9; mirrored, 0.41)."""
    import torch

    from snap_mqtt.detector import WindowSpec

    spec = WindowSpec.from_metadata(model.metadata)  # the detector's reading of the onset region
    w, hop = spec.window_samples, spec.hop_samples
    lo, hi = spec.onset_min_samples, spec.onset_max_samples
    left, right = max(0, hi), max(0, w - lo)
    x = np.asarray(x, np.float32)
    x = np.pad(x, (left, right), mode="reflect" if len(x) >= 2 else "constant")
    if len(x) < w:
        x = np.pad(x, (0, w - len(x)))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    windows = t.unfold(0, w, hop)  # [n, w]
    best = 0.0
    for i in range(0, len(windows), 256):
        best = max(best, float(model.predict(windows[i:i + 256].contiguous()).max()))
    return best


def _describe(path: Path) -> tuple[str, Any]:
    """One line about a clip (length, level, where its transient is) and its audio (None if unreadable)."""
    from snap_mqtt.audio_io import AudioFileError, read_audio
    from trainer.clipcheck import check_snap_clip

    try:
        a = read_audio(path)
    except AudioFileError as exc:
        return f"unreadable: {exc}", None
    peak = float(np.max(np.abs(a.samples)))
    chk = check_snap_clip(a.samples, a.sample_rate)
    where = (f"transient at {chk.onset_seconds(a.sample_rate):.2f} s" if chk.has_snap
             else "no clear transient")
    return f"{a.seconds:.2f} s, peak {20 * np.log10(max(peak, 1e-6)):.0f} dBFS, {where}", a


# ---------------------------------------------------------------------------------------------
# run


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    out: Path = args.out or folder
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    for label in LABELS:
        if (out / label).exists() and not (out / label).is_dir():
            raise UsageError(f"{out / label}: exists and is not a folder")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{folder}: not writable (clips are moved out of it and its journal lives there)")
    journal = Journal(folder)
    if journal.bad_lines:
        print(f"note: {journal.bad_lines} unreadable line(s) in {journal.path} ignored "
              f"(a run was cut off while writing it)")
    for note in journal.recover():
        print(f"resumed: {note}")
    if args.undo:
        return _undo(journal, args.undo)
    if args.auto:
        return _run_auto(args, folder, out, journal)
    return _run_interactive(args, folder, out, journal)


def _undo(journal: Journal, n: int) -> int:
    for _ in range(n):
        try:
            m = journal.undo_last()
        except LabelError as exc:
            raise UsageError(str(exc)) from None
        if m is None:
            print("nothing (more) to undo")
            break
        print(f"undone: {m.src} -> {m.dst}")
    return 0


def _run_auto(args: argparse.Namespace, folder: Path, out: Path, journal: Journal) -> int:
    from snap_mqtt.audio_io import AudioFileError, read_audio
    from snap_mqtt.model_file import default_model_path, load_model

    if not 0.0 <= args.no_snap_below < args.snap_above <= 1.0:
        raise UsageError(f"need 0 <= --no-snap-below < --snap-above <= 1 "
                         f"(got {args.no_snap_below} and {args.snap_above})")
    import torch

    torch.set_num_threads(1)
    model = load_model(args.model or default_model_path())
    rate = model.metadata.sample_rate
    clips = unlabelled_clips(folder, out)
    print(f"scoring {len(clips)} clip(s) in {folder} with {model.path} "
          f"(snap >= {args.snap_above}, not snap <= {args.no_snap_below})")
    counts = {"snap": 0, "no_snap": 0, "uncertain": 0, "unreadable": 0}
    for i, clip in enumerate(clips, 1):
        try:
            a = read_audio(clip, sample_rate=rate)
        except AudioFileError as exc:
            print(f"warning: skipped {exc}", file=sys.stderr)
            counts["unreadable"] += 1
            continue
        score = clip_score(model, a.samples)
        label = "snap" if score >= args.snap_above else "no_snap" if score <= args.no_snap_below else None
        if label is None:
            counts["uncertain"] += 1
            print(f"[{i}/{len(clips)}] {clip.name}: {score:.3f} uncertain, left for review")
            continue
        try:
            m = journal.perform("move", clip, out / label, label=label, how="auto", score=round(score, 4))
        except LabelError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        counts[label] += 1
        print(f"[{i}/{len(clips)}] {clip.name}: {score:.3f} -> {m.dst}")
    print(f"done: {counts['snap']} snap, {counts['no_snap']} no_snap, {counts['uncertain']} uncertain left "
          f"in {folder}" + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "")
          + f". Review the rest with: snap-train label {folder}" + (f" --out {out}" if out != folder else "")
          + "; undo with --undo N")
    return 0


class _Player:
    """Plays clips on a sounddevice output; if it cannot, says so once and labelling goes on silently."""

    def __init__(self, device: str | None, enabled: bool):
        self.sd: Any = None
        self.device: Any = None
        if not enabled:
            return
        try:
            import sounddevice as sd
        except OSError as exc:
            print(f"warning: cannot play audio ({exc}); labelling without sound")
            return
        self.sd = sd
        if device is not None:
            outs = [(i, d) for i, d in enumerate(sd.query_devices()) if d.get("max_output_channels", 0) > 0]
            listing = "\n".join(f"  {i:>3}  {d['name']}" for i, d in outs) or "  (none)"
            if device.strip().isdigit() and any(i == int(device) for i, _ in outs):
                self.device = int(device)
            else:
                hits = [i for i, d in outs if device.lower() in d["name"].lower()]
                if len(hits) != 1:
                    raise UsageError(f"output device {device!r} not found or ambiguous. "
                                     f"Available output devices:\n{listing}")
                self.device = hits[0]

    def play(self, audio: Any) -> None:
        if self.sd is None or audio is None:
            return
        try:
            self.sd.stop()
            self.sd.play(audio.samples, audio.sample_rate, device=self.device)
        except Exception as exc:  # PortAudioError: no output, device busy
            print(f"\nwarning: cannot play audio ({exc}); labelling without sound")
            self.sd = None

    def stop(self) -> None:
        if self.sd is not None:
            with contextlib.suppress(Exception):
                self.sd.stop()


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """Single key presses from the terminal (cbreak mode, no echo), restored afterwards."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield lambda: os.read(fd, 1).decode("utf-8", errors="replace").lower()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


HELP = "s snap · n not snap · k skip · r replay · u undo · q quit"


def _run_interactive(args: argparse.Namespace, folder: Path, out: Path, journal: Journal) -> int:
    if not sys.stdin.isatty():
        raise UsageError("interactive labelling needs a terminal (stdin is not one); "
                         "use --auto to sort with a model")
    queue = unlabelled_clips(folder, out)
    if not queue:
        print(f"no unlabelled clips in {folder}")
        return 0
    player = _Player(args.device, not args.no_play)
    counts = {"snap": 0, "no_snap": 0, "skip": 0, "undo": 0}
    i = 0
    print(f"{len(queue)} clip(s) to label in {folder} -> {out}/snap, {out}/no_snap.  {HELP}")
    try:
        with _keys() as key:
            while i < len(queue):
                clip = queue[i]
                info, audio = _describe(clip)
                if audio is None:  # corrupt or empty: not something to train on, and never deleted
                    print(f"[{len(queue) - i} left] {clip.name}: {info}; left in place", flush=True)
                    counts["skip"] += 1
                    i += 1
                    continue
                print(f"[{len(queue) - i} left] {clip.name}: {info}   (s/n/k/r/u/q)", flush=True)
                player.play(audio)
                while True:
                    k = key()
                    if k == "r":
                        player.play(audio)
                        continue
                    if k in ("s", "n", "k", "u", "q"):
                        break
                    if k in ("\x04", ""):  # end of input
                        k = "q"
                        break
                    print(f"  keys: {HELP}", flush=True)
                player.stop()
                if k == "q":
                    break
                if k == "k":
                    counts["skip"] += 1
                    print("  skipped (left in place)", flush=True)
                    i += 1
                    continue
                if k == "u":
                    try:
                        m = journal.undo_last()
                    except LabelError as exc:
                        print(f"  {exc}", flush=True)
                        continue
                    if m is None:
                        print("  nothing to undo", flush=True)
                        continue
                    counts["undo"] += 1
                    print(f"  undone: {m.src.parent.name}/{m.src.name} is back as {m.dst}", flush=True)
                    if m.dst.parent.resolve() == folder.resolve():
                        queue.insert(i, m.dst)  # ask about it again, now
                    continue
                label = "snap" if k == "s" else "no_snap"
                try:
                    m = journal.perform("move", clip, out / label, label=label, how="key")
                except LabelError as exc:
                    print(f"  {exc}", flush=True)
                    i += 1
                    continue
                counts[label] += 1
                print(f"  -> {m.dst.parent.name}/{m.dst.name}", flush=True)
                i += 1
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        player.stop()
    left = len(unlabelled_clips(folder, out))
    print(f"done: {counts['snap']} snap, {counts['no_snap']} no_snap, {counts['skip']} skipped, "
          f"{counts['undo']} undone; {left} unlabelled clip(s) left in {folder}"
          + ("; run the same command to go on" if left else ""), flush=True)
    return 0
