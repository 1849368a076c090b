"""`snap-mqtt detect`: the demo recording through the shipped model, and bad input of every kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snap_mqtt.audio_io import AudioFileError
from snap_mqtt.cli import main
from snap_mqtt.cmd_detect import detect_file
from snap_mqtt.model_file import default_model_path, load_model
from snap_mqtt.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "demo-scene.flac"
TRUTH = json.loads((ROOT / "demo" / "demo-scene.json").read_text())


def detect(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(["detect", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.upper().startswith("SNAP_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_demo_scene_json_gives_the_known_snaps_and_gestures(capsys):
    code, events, err = detect(capsys, "--json", str(DEMO))
    assert code == 0, err
    snaps = [e for e in events if e["event_type"] == "snap"]
    gestures = [e for e in events if e["event_type"] != "snap"]
    assert [e["time"] for e in snaps] == pytest.approx(TRUTH["snaps"], abs=0.05)
    assert [e["index"] for e in snaps] == [1, 1, 2, 1, 2, 3]
    assert [(g["event_type"], g["count"]) for g in gestures] == [("single_snap", 1), ("double_snap", 2),
                                                                  ("triple_snap", 3)]
    assert [g["time"] for g in gestures] == pytest.approx([g["time"] for g in TRUTH["gestures"]], abs=0.05)
    for e in events:  # the MQTT payload plus "file"
        assert e["file"] == str(DEMO) and e["timestamp"] and 0.0 < e["confidence"] <= 1.0
        keys = {"event_type", "confidence", "time", "timestamp", "file"}
        assert set(e) == keys | ({"index"} if e["event_type"] == "snap" else {"count"})


def test_bad_files_are_named_and_skipped_and_the_rest_still_processed(capsys, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    x, rate = sf.read(str(DEMO), dtype="float32")
    sf.write(str(d / "a_good_stereo_48k_24bit.wav"),
             np.stack([x, x], axis=1).repeat(3, axis=0), rate * 3, subtype="PCM_24")
    (d / "b_empty.wav").write_bytes(b"")
    (d / "c_junk.flac").write_bytes(os.urandom(5000))
    (d / "d_text.wav").write_text("this is not audio\n")
    data = DEMO.read_bytes()
    (d / "e_truncated.flac").write_bytes(data[: len(data) // 2])
    sf.write(str(d / "f_zero_frames.wav"), np.zeros((0, 1), dtype=np.float32), 16000)
    shutil.copy(DEMO, d / "g_good.flac")
    (d / "notes.txt").write_text("ignored: not an audio suffix")
    missing = tmp_path / "missing.wav"
    good = [d / "a_good_stereo_48k_24bit.wav", d / "g_good.flac"]
    code, alone, _ = detect(capsys, "--json", *map(str, good))
    assert code == 0 and sum(e["event_type"] == "snap" for e in alone) >= 10
    code, events, err = detect(capsys, "--json", str(d), str(missing))
    assert code == 1
    for bad in ("b_empty.wav", "c_junk.flac", "d_text.wav", "e_truncated.flac", "f_zero_frames.wav", "missing.wav"):
        assert any(bad in line and "skipped" in line for line in err.splitlines()), (bad, err)
    assert "Traceback" not in err and "notes.txt" not in err
    # both good files were processed in full, after and despite the bad ones: the same events as alone
    def strip(evs):
        return [{k: v for k, v in e.items() if k != "timestamp"} for e in evs]

    assert strip(events) == strip(alone)
    assert "2 file(s) processed" in err and "6 failed" in err


def test_a_bad_model_file_is_named_with_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code, events, err = detect(capsys, "--model", str(bad), str(DEMO))
    assert code == 2 and events == [] and str(bad) in err and "Traceback" not in err
    code, _, err = detect(capsys, "--model", str(tmp_path / "none.pt"), str(DEMO))
    assert code == 2 and "none.pt: model file not found" in err


def test_a_bad_config_exits_2_naming_the_field(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gap: -1\nmax_count: 0\n")
    code, _, err = detect(capsys, "--config", str(cfg), str(DEMO))
    assert code == 2 and "gap:" in err and "max_count:" in err


def test_flags_change_counting_and_threshold(capsys):
    code, events, _ = detect(capsys, "--json", "--max-count", "1", str(DEMO))
    assert code == 0
    assert [e["event_type"] for e in events if e["event_type"] != "snap"] == ["single_snap"] * 6
    # a stricter threshold keeps only snaps the model is at least that sure of (the shipped model
    # saturates at 1.0 on clean snaps, so no threshold below 1 is guaranteed to silence the demo)
    code, base, _ = detect(capsys, "--json", str(DEMO))
    code, strict, _ = detect(capsys, "--json", "--threshold", "0.999", str(DEMO))
    assert code == 0
    assert any(e["confidence"] < 0.999 for e in base if e["event_type"] == "snap")
    assert all(e["confidence"] >= 0.999 for e in strict)
    assert {e["time"] for e in strict if e["event_type"] == "snap"} <= {e["time"] for e in base if e["event_type"] == "snap"}


def test_readable_output_without_json(capsys):
    code = main(["detect", str(DEMO)])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert sum("snap #" in line for line in lines) == 6
    assert sum("triple_snap" in line for line in lines) == 1 and all(str(DEMO) in line for line in lines)


def test_the_installed_console_script(tmp_path):
    exe = Path(sys.executable).parent / "snap-mqtt"
    r = subprocess.run([str(exe), "detect", "--json", str(DEMO)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(line)["event_type"] for line in r.stdout.splitlines()]
    assert kinds.count("snap") == 6 and kinds.count("double_snap") == 1


@pytest.fixture(scope="module")
def model():
    return load_model(default_model_path())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=3000), st.sampled_from([".wav", ".flac", ".ogg"]),
       st.sampled_from([b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS"]))
def test_random_bytes_as_audio_are_skipped_with_the_file_named(model, tmp_path, data, suffix, magic):
    p = tmp_path / f"random{suffix}"
    p.write_bytes(magic + data)
    try:
        list(detect_file(p, model, Settings.load(env_file=None)))
    except AudioFileError as e:
        assert str(p) in str(e)
