"""Audio in: real capture through PulseAudio + sounddevice, the bounded block queue, device
lookup, the `devices` command and the paced file replay that shares the microphone's path."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from listener_support import ListenerProc, Recorder, event_times, make_energy_model, make_scene
from snap_mqtt import cli
from snap_mqtt.capture import AudioBlock, AudioDeviceError, AudioEnd, BlockQueue, resolve_device
from snap_mqtt.file_source import FileSource

NODE = "micnode"
T = f"snap_mqtt/{NODE}"
SNAPS = [1.0, 2.5, 2.8]  # a single, then a double


def test_real_capture_publishes_events_and_saves_opt_in_clips(tmp_path, broker, pulse):
    """A recording with known snaps played into the PulseAudio null sink; the listener captures
    the sink's monitor through sounddevice; the events arrive on the broker. With capture_dir
    set, the audio around each detection is saved for `snap-train label`."""
    scene = make_scene(tmp_path / "scene.flac", SNAPS, 3.6)
    model = make_energy_model(tmp_path / "energy.pt")
    clips = tmp_path / "clips"
    rec = Recorder(broker.port, [f"{T}/#"])
    proc = ListenerProc(["--model", str(model), "--host", "127.0.0.1", "--port", str(broker.port),
                         "--node-id", NODE, "--capture-dir", str(clips)], tmp_path,
                        {"XDG_RUNTIME_DIR": pulse.env["XDG_RUNTIME_DIR"]})
    try:
        rec.wait_payload(f"{T}/availability", "online", timeout=60)
        assert pulse.play(scene).wait(20) == 0
        rec.wait_for(lambda ms: len(rec.on(f"{T}/gesture")) >= 2 or None, 10, "two gestures")
        snaps = event_times(rec.on(f"{T}/snap"))
        assert len(snaps) == 3, snaps
        # stream time has its own origin: compare the spacing of the snaps
        assert np.allclose(np.diff(snaps), np.diff(SNAPS), atol=0.05), snaps
        assert [m.json()["index"] for m in rec.on(f"{T}/snap")] == [1, 1, 2]
        assert [m.json()["event_type"] for m in rec.on(f"{T}/gesture")] == ["single_snap", "double_snap"]
        assert "capturing from" in proc.log
        # detection clips: one per snap, 250 ms at the model's rate, never overwritten
        deadline = time.monotonic() + 5
        while len(list(clips.glob("*.flac"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        files = sorted(clips.glob("*.flac"))
        assert len(files) == 3
        for f in files:
            x, sr = sf.read(f)
            assert sr == 16000 and abs(len(x) / sr - 0.25) < 0.01 and np.abs(x).max() > 0.05
        proc.signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.stop()
        rec.close()


def test_block_queue_counts_overflow_and_marks_the_gap():
    q = BlockQueue(maxsize=2)
    blk = np.zeros((10, 1), np.float32)
    assert q.offer(blk, 16000) and q.offer(blk, 16000)
    assert not q.offer(blk, 16000) and not q.offer(blk, 16000)  # full: dropped, never blocks
    assert q.dropped == 2
    first, second = q.get(0.1), q.get(0.1)
    assert not first.gap_before and not second.gap_before
    assert q.offer(blk, 16000)
    after = q.get(0.1)
    assert after.gap_before  # the consumer resets the detector here
    assert after.gap_seconds == pytest.approx(20 / 16000)  # the stream clock skips what was lost
    assert q.offer(blk, 16000) and not q.get(0.1).gap_before
    assert q.get(0.05) is None


def test_device_lookup_by_name_and_index(pulse):
    assert resolve_device(None) is None
    idx = resolve_device("default")
    assert isinstance(idx, int)
    assert resolve_device(str(idx)) == idx == resolve_device(idx)
    with pytest.raises(AudioDeviceError, match="no-such-mic"):
        resolve_device("no-such-mic")
    with pytest.raises(AudioDeviceError, match="999"):
        resolve_device(999)


def test_devices_command_lists_inputs(pulse, capsys):
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "*" in out


def test_file_source_is_paced_and_keeps_the_files_format(tmp_path):
    path = tmp_path / "stereo.wav"
    x = np.random.default_rng(0).normal(0, 0.1, (44100, 2)).astype(np.float32)
    sf.write(path, x, 44100, subtype="FLOAT")
    for speed, lo, hi in ((4.0, 0.2, 1.5), (0.0, 0.0, 0.5)):
        q = BlockQueue(maxsize=1000)
        src = FileSource(path, q, speed=speed, block_seconds=0.05)
        t0 = time.monotonic()
        src.run(threading.Event())
        took = time.monotonic() - t0
        assert lo <= took <= hi, (speed, took)
        items = []
        while (it := q.get(0.01)) is not None:
            items.append(it)
        assert isinstance(items[-1], AudioEnd)
        blocks = [b for b in items if isinstance(b, AudioBlock)]
        assert all(b.sample_rate == 44100 and b.samples.shape[1] == 2 for b in blocks)
        np.testing.assert_allclose(np.concatenate([b.samples for b in blocks]), x, atol=1e-7)


def test_file_source_errors_name_the_file(tmp_path):
    from snap_mqtt.audio_io import AudioFileError

    with pytest.raises(AudioFileError, match="missing.flac"):
        FileSource(tmp_path / "missing.flac", BlockQueue())
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00junk")
    with pytest.raises(AudioFileError, match="bad.wav"):
        FileSource(bad, BlockQueue())
