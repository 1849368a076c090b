"""`snap-train scenes` + `snap-train evaluate` on the committed fixtures (tests/fixtures/audio), and
the baselines' own logic on hand-made signals. The full evaluation on ../shared/data is not a test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from snap_mqtt.audio_io import read_audio
from snap_mqtt.model_file import ModelMetadata, default_model_path, load_model, save_model
from snap_mqtt.onset import find_onset
from trainer import cli
from trainer.splits import split_of

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"
SCENE_ARGS = ["--data", str(FIX), "--scenes", "4", "--seconds", "12", "--background-split", "all"]


def build(out: Path, seed: int) -> dict:
    assert cli.main(["scenes", *SCENE_ARGS, "--out", str(out), "--seed", str(seed)]) == 0
    return json.loads((out / "scenes.json").read_text())


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "s"
    build(out, seed=3)
    return out


def test_scene_truth_follows_the_brief(scenes: Path):
    index = json.loads((scenes / "scenes.json").read_text())
    assert len(index["scenes"]) == 4
    assert {s["sample_rate"] for s in index["scenes"]} == {16000, 44100, 48000}
    assert len({s["kind"] for s in index["scenes"]}) == 4  # one per fixture background
    # only held-out snap clips, and each clip's onset lies inside it with room for the snap
    assert index["snap_clips"] and all(split_of(n) == "test" for n in index["snap_clips"])
    n_snaps = 0
    for s in index["scenes"]:
        info = sf.info(str(scenes / s["file"]))
        assert info.samplerate == s["sample_rate"]
        assert info.duration == pytest.approx(s["seconds"], abs=1e-3) and s["seconds"] == pytest.approx(12.0, abs=1e-3)
        assert s["backgrounds"] and all(b["file"].endswith(".flac") for b in s["backgrounds"])
        times = [p["time"] for p in s["snaps"]]
        assert times == sorted(times) and 1.0 <= times[0] and times[-1] <= 12.0 - 1.5
        assert sum(g["count"] for g in s["gestures"]) == len(times)
        for g in s["gestures"]:
            assert 1 <= g["count"] <= 3 and g["time"] == g["snaps"][0]
            gaps = np.diff(g["snaps"])
            assert np.all((gaps >= 0.25 - 1e-3) & (gaps <= 0.5 + 1e-3))
        for a, b in zip(s["gestures"], s["gestures"][1:]):
            assert b["snaps"][0] - a["snaps"][-1] >= 3.0 - 1e-3
        for p in s["snaps"]:
            assert p["snr_db"] <= 30.0 + 0.01
            assert p["snr_db"] >= 3.0 - 0.01 or p["gain_db"] < 0  # below 3 dB only when turned down to avoid clipping
            # its peak as mixed: the clip's own first 50 ms at the scene's rate, times the gain
            clip = read_audio(FIX / "snap" / p["clip"], sample_rate=s["sample_rate"]).samples
            on = find_onset(clip, s["sample_rate"])
            assert on is not None
            own = 20 * np.log10(np.max(np.abs(clip[on.index:on.index + int(0.05 * s["sample_rate"])])))
            assert p["peak_dbfs"] == pytest.approx(own + p["gain_db"], abs=0.5)
        n_snaps += len(times)
        # the stored onsets are where the signal says the snaps start, at any rate
        x = read_audio(scenes / s["file"]).samples
        rate = s["sample_rate"]
        assert np.max(np.abs(x)) <= 1.0
        for p in s["snaps"]:
            if p["snr_db"] >= 15:
                pos = int(round(p["time"] * rate))
                o = find_onset(x, rate, start=pos - int(0.03 * rate), stop=pos + int(0.06 * rate))
                assert o is not None and abs(o.index - pos) <= int(0.002 * rate)
    assert n_snaps >= 12
    # negatives: every background kind, and the held-out no_snap clips, without any snap
    kinds = {n["kind"] for n in index["negatives"]}
    assert kinds == {"dishes", "keyboard", "music", "speech", "no_snap"}
    no_snap = next(n for n in index["negatives"] if n["kind"] == "no_snap")
    assert no_snap["sources"] and all(split_of(n) == "test" for n in no_snap["sources"])
    for n in index["negatives"]:
        assert sf.info(str(scenes / n["file"])).duration == pytest.approx(n["seconds"], abs=1e-3)


def test_scenes_are_deterministic_from_the_seed(scenes: Path, tmp_path: Path):
    again = build(tmp_path / "again", seed=3)
    first = json.loads((scenes / "scenes.json").read_text())
    assert again["scenes"] == first["scenes"]
    for s in first["scenes"]:
        a = sf.read(str(scenes / s["file"]))[0]
        b = sf.read(str(tmp_path / "again" / s["file"]))[0]
        assert np.array_equal(a, b)
    other = build(tmp_path / "other", seed=4)
    assert [p["time"] for s in other["scenes"] for p in s["snaps"]] != \
        [p["time"] for s in first["scenes"] for p in s["snaps"]]


def test_scenes_never_overwrite_and_name_what_is_wrong(scenes: Path, tmp_path: Path, capsys):
    before = (scenes / "scenes.json").read_bytes()
    assert cli.main(["scenes", *SCENE_ARGS, "--out", str(scenes)]) == 2
    assert "scenes.json exists" in capsys.readouterr().err
    assert (scenes / "scenes.json").read_bytes() == before
    # the fixture backgrounds are not in the evaluation list of trainer/splits.py: refused by default
    assert cli.main(["scenes", "--data", str(FIX), "--out", str(tmp_path / "x")]) == 2
    assert "background" in capsys.readouterr().err
    assert cli.main(["scenes", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert "nowhere" in capsys.readouterr().err


def _val_name(name: str) -> str:
    """A new name for a clip that the hash split puts in the validation part."""
    stem = Path(name).stem
    return next(n for n in (f"{stem}-v{k}.flac" for k in range(200)) if split_of(n) == "val")


def _data_with_backgrounds(tmp_path: Path, backgrounds: dict[str, np.ndarray], val_clips: bool = False) -> Path:
    """A data folder: the fixture clips (symlinked; `val_clips`: renamed into the validation part,
    which the fixtures lack) and the given background files (16 kHz)."""
    data = tmp_path / "data"
    for sub in ("snap", "no_snap"):
        (data / sub).mkdir(parents=True)
        for f in sorted((FIX / sub).glob("*.flac")):
            (data / sub / (_val_name(f.name) if val_clips else f.name)).symlink_to(f)
    for rel, x in backgrounds.items():
        (data / "background" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(data / "background" / rel), x, 16000)
    return data


def test_scenes_over_one_second_background_files_finish(tmp_path: Path):
    # thirty seconds of bed from 1 s files: the crossfades once made the last piece empty, forever
    rng = np.random.default_rng(0)
    files = {f"speech/sc09__nine__{i}.flac": (0.05 * rng.standard_normal(16000)).astype(np.float32) for i in range(2)}
    data = _data_with_backgrounds(tmp_path, files)
    out = tmp_path / "s"
    assert cli.main(["scenes", "--data", str(data), "--out", str(out), "--scenes", "1", "--seconds", "30",
                     "--background-split", "all"]) == 0
    index = json.loads((out / "scenes.json").read_text())
    assert index["scenes"][0]["seconds"] == pytest.approx(30.0)
    assert sf.info(str(out / index["scenes"][0]["file"])).duration == pytest.approx(30.0, abs=0.01)


def test_validation_scenes_use_only_the_validation_parts(tmp_path: Path):
    from trainer.scenes import collect_inputs

    rng = np.random.default_rng(1)
    noise = lambda s: (0.05 * rng.standard_normal(int(s * 16000))).astype(np.float32)  # noqa: E731
    short = [f"speech/clip{i}.flac" for i in range(12)]
    files = {"music/long.flac": noise(40.0), "music/Kevin_MacLeod_-_Vibe_Ace.flac": noise(30.0),
             **{rel: noise(1.0) for rel in short}}
    data = _data_with_backgrounds(tmp_path, files, val_clips=True)
    inputs = collect_inputs(data, background_split="val", clip_split="val")
    used = {b.rel: b.part for b in inputs.backgrounds}
    assert used["music/long.flac"] == (0.70, 0.85)  # a long file: the stretch training kept for validation
    assert "music/Kevin_MacLeod_-_Vibe_Ace.flac" not in used  # an evaluation background: never
    assert {r for r in used if r.startswith("speech/")} == {r for r in short if split_of(Path(r).name) == "val"}
    assert inputs.snaps and all(split_of(c.name) == "val" for c in inputs.snaps)
    assert all(split_of(p.name) == "val" for p in inputs.no_snaps)
    out = tmp_path / "v"
    assert cli.main(["scenes", "--data", str(data), "--out", str(out), "--scenes", "2", "--seconds", "10",
                     "--clips", "val", "--background-split", "val"]) == 0
    index = json.loads((out / "scenes.json").read_text())
    assert (index["clip_split"], index["background_split"]) == ("val", "val")
    assert set(index["snap_clips"]) == {c.name for c in inputs.snaps}


def test_evaluate_runs_the_pipeline_and_scores_it(scenes: Path, tmp_path: Path):
    from snap_mqtt.detector import WindowSpec
    from trainer.evaluate import load_recordings, run_pipeline
    from trainer.metrics import SnapScore

    model_path = default_model_path()
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model_path), "--scenes", str(scenes), "--out", str(out),
            "--sweep", "0.3,0.9", "--baselines", "transient"]
    assert cli.main(args) == 0
    res = json.loads((out / "evaluation.json").read_text())
    index = json.loads((scenes / "scenes.json").read_text())
    ours = res["detectors"]["ours"]
    total = sum(len(s["snaps"]) for s in index["scenes"])
    assert ours["snaps"]["tp"] + ours["snaps"]["fn"] == total
    assert res["detectors"]["transient"]["snaps"]["tp"] + res["detectors"]["transient"]["snaps"]["fn"] == total
    assert ours["gestures"]["true_gestures"] == sum(len(s["gestures"]) for s in index["scenes"])
    assert ours["negatives"]["hours"] == pytest.approx(sum(n["seconds"] for n in index["negatives"]) / 3600)
    assert set(ours["by_kind"]) == {"dishes", "keyboard", "music", "speech", "no_snap"}
    assert set(ours["scenes_by_rate"]) == {"16000", "44100", "48000"}
    assert [p["threshold"] for p in ours["sweep"]] == sorted({0.3, 0.9, load_model(model_path).metadata.threshold})
    assert ours["snaps"]["tp"] > 0 and ours["snaps"]["median_abs_onset_error_ms"] < 30
    # recall by each snap's peak level: every snap in one band, the bands' hits the snaps found
    by_level = ours["recall_by_peak_below_fs_db"]
    assert sum(b["snaps"] for b in by_level.values()) == total
    assert sum(b["detected"] for b in by_level.values()) == ours["snaps"]["tp"]
    quiet = sum(-p["peak_dbfs"] >= 20 for s in index["scenes"] for p in s["snaps"])
    assert sum(b["snaps"] for k, b in by_level.items() if k in ("20-30", "30-40", ">=40")) == quiet
    assert "recall by snap peak" in (out / "report.txt").read_text()
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ours" in (out / "report.txt").read_text()
    # the figures are the listener's pipeline run directly, scene by scene (one scene per kind here)
    model = load_model(model_path)
    spec = WindowSpec.from_metadata(model.metadata)
    for rec in load_recordings(scenes):
        if rec.role != "scene":
            continue
        x = read_audio(rec.file).samples
        d = run_pipeline(model, spec, model.metadata.threshold, x, rec.sample_rate, block_seconds=0.37)
        s = SnapScore()
        s.add(rec.snaps, d.snaps)
        assert ours["by_kind"][rec.kind]["snaps"]["tp"] == s.tp
        assert ours["by_kind"][rec.kind]["snaps"]["fp"] == s.fp
    # the sweep's other thresholds (replayed probabilities) equal a direct run at that threshold
    direct = SnapScore()
    for rec in load_recordings(scenes):
        if rec.role == "scene":
            d = run_pipeline(model, spec, 0.9, read_audio(rec.file).samples, rec.sample_rate, block_seconds=0.25)
            direct.add(rec.snaps, d.snaps)
    p09 = next(p for p in ours["sweep"] if p["threshold"] == 0.9)
    assert (p09["recall"], p09["precision"]) == (pytest.approx(direct.recall), pytest.approx(direct.precision))
    # a second run never overwrites the first
    assert cli.main(args[:-4] + ["--sweep", "0.5", "--baselines", "none"]) == 0
    assert (tmp_path / "eval-2" / "evaluation.json").is_file()
    assert json.loads((out / "evaluation.json").read_text()) == res


def test_evaluate_with_a_follow_threshold(scenes: Path, tmp_path: Path, capsys):
    base = ["evaluate", "--scenes", str(scenes), "--sweep", "0.9", "--baselines", "none", "--threshold", "0.9"]
    # a follow threshold equal to the threshold is one threshold
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--follow-threshold", "0.9"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--follow-threshold", "0.3"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "m")]) == 0
    one = json.loads((tmp_path / "a" / "evaluation.json").read_text())["detectors"]["ours"]
    two = json.loads((tmp_path / "b" / "evaluation.json").read_text())["detectors"]["ours"]
    own = json.loads((tmp_path / "m" / "evaluation.json").read_text())["detectors"]["ours"]
    assert one["follow_threshold"] == 0.9 and two["follow_threshold"] == 0.3
    assert own["follow_threshold"] == load_model(default_model_path()).metadata.follow_threshold  # the model's own
    # the lower bar adds snaps next to sure ones, never takes one away
    assert two["snaps"]["tp"] + two["snaps"]["fp"] >= one["snaps"]["tp"] + one["snaps"]["fp"]
    assert two["snaps"]["tp"] >= one["snaps"]["tp"]
    capsys.readouterr()
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--follow-threshold", "1.5"]) == 2
    assert "--follow-threshold" in capsys.readouterr().err


def test_evaluate_names_a_missing_scenes_index(tmp_path: Path, capsys):
    assert cli.main(["evaluate", "--scenes", str(tmp_path), "--baselines", "none"]) == 2
    assert str(tmp_path / "scenes.json") in capsys.readouterr().err
    (tmp_path / "scenes.json").write_text("{not json")
    assert cli.main(["evaluate", "--scenes", str(tmp_path), "--baselines", "none"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["evaluate", "--scenes", str(tmp_path), "--baselines", "claps"]) == 2
    assert "--baselines: unknown claps" in capsys.readouterr().err


# ---- baselines --------------------------------------------------------------------------------

class _PeakBlock(torch.nn.Module):
    """A stand-in for the seed's ConvNet with its contract (2 s blocks at 44.1 kHz): 'snap' when a
    block's peak passes 0.5, so the block bookkeeping can be checked by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs().amax(dim=1) > 0.5).float()


def _click(x: np.ndarray, rate: int, t: float, amp: float = 0.9) -> None:
    n = int(0.01 * rate)
    k = int(t * rate)
    x[k:k + n] += amp * np.exp(-np.arange(n) / (0.001 * rate)) * np.sign(np.sin(np.arange(n) * 2.1))


def test_seed_baseline_block_figures_by_hand(tmp_path: Path):
    from trainer.baselines import SEED_BLOCK, SEED_RATE
    from trainer.evaluate import Recording, evaluate_seed
    from trainer.metrics import Gesture

    meta = ModelMetadata(sample_rate=SEED_RATE, window_samples=SEED_BLOCK, hop_samples=SEED_BLOCK,
                         threshold=0.65, trainer_version="test")
    model = load_model(save_model(torch.jit.script(_PeakBlock()), meta, tmp_path / "seed.pt"))
    scene = np.zeros(10 * SEED_RATE, dtype=np.float32)
    for t in (0.3, 0.6, 4.5):  # a double in block 0, a single in block 2
        _click(scene, SEED_RATE, t)
    neg = np.zeros(4 * SEED_RATE, dtype=np.float32)
    _click(neg, SEED_RATE, 2.5)
    recs = [Recording(Path("scene.flac"), "scene", "k", SEED_RATE, 10.0, [0.3, 0.6, 4.5], [10.0] * 3,
                      [Gesture.of([0.3, 0.6]), Gesture.of([4.5])]),
            Recording(Path("neg.flac"), "negative", "k", SEED_RATE, 4.0)]
    res = evaluate_seed(model, recs, {0: scene, 1: neg})
    b = res["blocks"]
    assert (b["scene_blocks"], b["accuracy"], b["precision"], b["recall"]) == (5, 1.0, 1.0, 1.0)
    assert b["blocks_with_several_snaps"] == 1 and b["share_of_snaps_in_a_positive_block"] == 1.0
    assert b["negative_positive_blocks"]["events"] == 1
    assert b["negative_positive_blocks"]["per_hour"] == pytest.approx(900.0)
    # its events sit mid-block (1 s, 5 s): none within 150 ms of a true onset
    assert (res["snaps"]["tp"], res["snaps"]["fp"], res["snaps"]["fn"]) == (0, 2, 3)
    assert res["gestures"]["exact_count"] == 0
    assert res["negatives"]["false_gestures"]["events"] == 1


def test_transient_detector_hears_clicks_not_sustained_sound():
    from trainer.baselines import transient_onsets

    rate = 16000
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1e-3, 6 * rate).astype(np.float32)
    for t in (1.0, 1.3, 4.0):
        _click(x, rate, t, amp=0.5)
    k = int(2.5 * rate)  # a loud sustained hiss: a jump without a short decay
    x[k:k + rate // 2] += rng.normal(0, 0.2, rate // 2).astype(np.float32)
    got = transient_onsets(x, rate)
    assert len(got) == 3
    assert np.allclose(got, [1.0, 1.3, 4.0], atol=0.005)


def test_a_replay_scores_the_windows_the_recorded_run_scored(scenes: Path):
    """A replay runs on the model-rate audio the pipeline's resampler made; its windows must start
    where the recorded run's did (the phase set behind the resampler), or every probability lands
    on the wrong window."""
    from trainer.evaluate import load_recordings, record_pass

    model = load_model(default_model_path())
    recs = [r for r in load_recordings(scenes) if r.role == "scene"]
    audio = {i: read_audio(r.file).samples for i, r in enumerate(recs)}
    run = record_pass(model, recs, audio, 0.5, block_seconds=0.1)
    assert {r.sample_rate for r in recs} == {16000, 44100, 48000}
    # behind a resampler the windows sit earlier by its lag (10 model samples here)
    phases = {r.sample_rate: d.phase for r, d in zip(recs, run.detections)}
    assert phases[44100] == phases[48000] == phases[16000] - 10
    again = run.replay(0.5)
    assert [(d.snaps, d.gestures) for d in again] == [(d.snaps, d.gestures) for d in run.detections]
    assert sum(len(d.snaps) for d in again) > 0
