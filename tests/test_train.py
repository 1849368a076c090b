"""A real tiny training run on the committed fixture clips, through the `snap-train train` command:
it writes a report and a model file that loads with torch alone (no torchaudio in the process)
and scores real snap clips the training never saw above real non-snap clips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snap_mqtt.model_file import load_model
from trainer.cli import main as snap_train
from trainer.splits import split_of

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"

TINY = ["--epochs", "5", "--patience", "6", "--mine-rounds", "1", "--mine-epochs", "2", "--epoch-windows", "512", "--val-windows", "256",
        "--test-windows", "256", "--batch-size", "64", "--threads", "1", "--no-progress", "--seed", "7",
        "--polish-steps", "30", "--polish-hard-positives", "0.05", "--polish-soup", "2", "--synthetic-drums", "60",
        "--lookalike-kits", "60"]

# Scores the model in a fresh interpreter that must not import torchaudio: each clip is placed in
# noise at its own floor and scored over every window position (hop as in the metadata); the clip's score is
# its highest window score, as the detector sees it.
SCORER = r"""
import json, sys
import numpy as np, soundfile as sf, torch
from scipy.signal import resample_poly
from snap_mqtt.model_file import load_model
torch.set_num_threads(1)
m = load_model(sys.argv[1])
md = m.metadata
out = {}
for path in sys.argv[2:]:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    x = resample_poly(x.mean(axis=1), md.sample_rate, rate).astype(np.float32)
    # room tone around the clip: noise at the level of its quietest 20 ms, so the joins are no
    # transients of their own
    seg = 320
    floor = min(float(np.sqrt(np.mean(x[i:i + seg] ** 2))) for i in range(0, len(x) - seg + 1, seg // 2))
    pad = lambda: np.random.default_rng(len(out)).normal(0, floor, md.window_samples).astype(np.float32)
    sig = np.concatenate([pad(), x, pad()])
    starts = range(0, len(sig) - md.window_samples + 1, md.hop_samples)
    w = torch.from_numpy(np.stack([sig[s:s + md.window_samples] for s in starts]))
    out[path] = float(m.predict(w).max())
print(json.dumps({"torchaudio_loaded": "torchaudio" in sys.modules, "scores": out}))
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    rc = snap_train(["train", "--data", str(FIX), "--out", str(out), *TINY])
    assert rc == 0
    return out


def test_tiny_training_writes_report_and_a_valid_model(tiny_run):
    for name in ("manifest.csv", "test_metrics.json", "history.json", "metrics_per_epoch.png",
                 "confusion_matrix.png", "precision_recall_threshold.png", "run.json"):
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "tb").rglob("events.out.tfevents.*"))
    assert any((tiny_run / "checkpoints").glob("*.ckpt"))
    model = load_model(tiny_run / "model.pt")
    md = model.metadata
    assert (md.sample_rate, md.window_samples, md.hop_samples) == (16000, 4000, 320)
    assert md.onset_min_samples < md.onset_max_samples <= md.window_samples
    assert 0.0 < md.threshold < 1.0
    assert md.data["train"]["snap"] == 10 and md.data["test"]["snap"] == 10
    metrics = json.loads((tiny_run / "test_metrics.json").read_text())["test"]
    assert metrics == {k: v for k, v in md.test_metrics.items() if k != "val"}
    for key in ("accuracy", "precision", "recall", "f1", "auroc"):
        assert 0.0 <= metrics[key] <= 1.0
    history = json.loads((tiny_run / "history.json").read_text())
    assert len(history) >= 1 and all({"val_loss", "train_loss", "val_f1", "train_f1", "val_auroc"} <= set(h) for h in history)
    assert [h["epoch"] for h in history] == list(range(len(history)))
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["training"]["mining"][0]["windows_scored"] > 0  # a mining round over the backgrounds ran
    assert run["training"]["background_speeds"] == [0.85, 0.93, 1.08, 1.18]  # the default recipe's
    assert run["training"]["synthetic_drums_seconds"] == 60
    assert run["training"]["lookalike_kits_seconds"] == 60  # recorded claps and clicks, training kits only
    polish = run["training"]["polish"]  # and the event-level polish over the negatives
    assert polish["negative_seconds"] > 0 and polish["mining_rounds"][0]["windows"] >= 0
    first = polish["mining_rounds"][0]  # nothing to learn only when nothing fired and no snap was missed or late
    assert polish["steps"] in (0, 30) and (polish["steps"] == 0) == (first["windows"] == 0 and first["hard_positives"] == 0)
    assert polish["settings"]["p_hard_pos"] == pytest.approx(0.05) and first["snaps"] > 0
    # two polishes from the trained weights, seeds 7 and 8, averaged
    assert [m["seed"] for m in polish["soup"]] == [7, 8] and polish["soup"][0]["mining_rounds"] == polish["mining_rounds"]
    # the manifest records every file with its split
    import pandas as pd

    man = pd.read_csv(tiny_run / "manifest.csv")
    snaps = man[man.label == "snap"]
    assert len(snaps) == 20
    assert all(split_of(Path(p).name) == s for p, s in zip(snaps.path, snaps.split))


@pytest.mark.parametrize("speeds", ["fast", "0.2,1.1"])
def test_bad_background_speeds_are_refused_naming_the_flag(tmp_path, capsys, speeds):
    assert snap_train(["train", "--data", str(FIX), "--out", str(tmp_path / "r"), "--background-speeds", speeds]) == 2
    assert "--background-speeds" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_exported_model_runs_without_torchaudio_and_ranks_unseen_snaps_first(tiny_run):
    snaps = sorted(p for p in (FIX / "snap").glob("*.flac") if split_of(p.name) == "test")
    others = sorted(p for p in (FIX / "no_snap").glob("*.flac") if split_of(p.name) == "test")
    assert len(snaps) == 10 and len(others) == 10
    res = subprocess.run([sys.executable, "-c", SCORER, str(tiny_run / "model.pt"), *map(str, snaps + others)],
                         capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["torchaudio_loaded"] is False
    s = np.array([report["scores"][str(p)] for p in snaps])
    n = np.array([report["scores"][str(p)] for p in others])
    assert s.mean() > n.mean()
    # most unseen snaps outrank most unseen non-snaps (pairwise AUROC)
    auc = float(np.mean(s[:, None] > n[None, :]))
    assert auc >= 0.75, (auc, s, n)


def test_fine_tuning_starts_from_a_model_file(tiny_run, tmp_path):
    out = tmp_path / "tuned"
    rc = snap_train(["train", "--data", str(FIX), "--out", str(out), "--init", str(tiny_run / "model.pt"),
                     "--epochs", "1", "--mine-rounds", "0", "--epoch-windows", "128", "--val-windows", "64", "--test-windows", "64",
                     "--threads", "1", "--no-progress", "--lookalike-kits", "30", "--polish-steps", "0"])
    assert rc == 0
    run = json.loads((out / "run.json").read_text())
    assert run["training"]["init"] == str(tiny_run / "model.pt")
    assert load_model(out / "model.pt").metadata.extra["model_config"] == \
        load_model(tiny_run / "model.pt").metadata.extra["model_config"]


def test_polish_command_writes_a_new_model_and_never_overwrites(tiny_run, tmp_path, capsys):
    src = tiny_run / "model.pt"
    out = tmp_path / "polished.pt"
    rc = snap_train(["polish", str(src), "--data", str(FIX), "--out", str(out), "--steps", "20",
                     "--test-windows", "64", "--threads", "1", "--no-progress", "--hard-positives", "0.1",
                     "--soup", "1", "--synthetic-drums", "30", "--lookalike-kits", "30",
                     "--positive-snr=-3,25", "--positive-background", "0.85"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "false triggers on" in text and "test windows at threshold" in text
    base, new = load_model(src).metadata, load_model(out).metadata
    assert new.threshold == pytest.approx(base.threshold)  # the polish keeps the calibrated threshold
    info = new.extra["polish"]
    assert info["base"] == "model.pt" and len(info["base_sha256"]) == 64
    assert info["negative_seconds"] > 0 and set(info["test_windows_before"]) == {"precision", "recall", "f1", "auroc"}
    for k in ("precision", "recall", "f1"):
        assert 0.0 <= new.test_metrics[k] <= 1.0
    assert info["background_speeds"] == [0.85, 0.93, 1.08, 1.18] and info["synthetic_drums_seconds"] == 30
    assert "soup" not in info  # one polish
    assert info["positive_mix"] == {"snr_db": [-3.0, 25.0], "p_background_mix": 0.85}  # quieter positives
    # BatchNorm statistics frozen: mining and fine-tuning leave them as the base had them
    from trainer.export import load_trainable

    bn_base = {k: v for k, v in load_trainable(src)[0].state_dict().items() if "running_" in k}
    bn_new = load_trainable(out)[0].state_dict()
    assert bn_base and all(np.array_equal(v.numpy(), bn_new[k].numpy()) for k, v in bn_base.items())
    # hard positives: each mining round scored fresh training snaps as the detector meets them
    assert info["settings"]["p_hard_pos"] == pytest.approx(0.1) and len(info["mining_rounds"]) == 3
    for r in info["mining_rounds"]:
        assert r["snaps"] == info["hard_positive_draws"] > 0 and 0 <= r["missed"] + r["late"] <= r["snaps"]
        assert r["missed"] * 2 <= r["hard_positives"] <= 3 * r["missed"] + 3 * r["late"]
    assert "training snaps missed / decided late" in text
    # polished again (a copy given a follow threshold, as `snap-train tune` writes one): the lineage
    # and the follow threshold stay in the metadata
    import dataclasses

    from snap_mqtt.model_file import save_model

    m = load_model(out)
    follow = round(m.metadata.threshold / 2, 4)
    save_model(m.module, dataclasses.replace(m.metadata, follow_threshold=follow), tmp_path / "tuned.pt")
    again = tmp_path / "again.pt"
    assert snap_train(["polish", str(tmp_path / "tuned.pt"), "--data", str(FIX), "--out", str(again), "--steps", "5",
                       "--test-windows", "32", "--threads", "1", "--no-progress", "--background-speeds", "none",
                       "--synthetic-drums", "0", "--lookalike-kits", "0", "--soup", "1", "--hard-positives", "0"]) == 0
    assert load_model(again).metadata.follow_threshold == pytest.approx(follow)
    twice = load_model(again).metadata.extra
    assert twice["earlier_polishes"] == [info] and twice["polish"]["background_speeds"] == []
    assert twice["polish"]["synthetic_drums_seconds"] == 0 and "lookalike_kits_seconds" not in twice["polish"]
    assert info["lookalike_kits_seconds"] == 30  # the first polish played the training kits' claps and clicks
    assert twice["polish"]["negative_seconds"] < info["negative_seconds"]  # no speed variants, drums, look-alikes
    assert twice["polish"]["hard_positive_draws"] == 0 and "missed" not in capsys.readouterr().out
    assert twice["polish"]["base_sha256"] != info["base_sha256"]
    assert twice["polish"]["positive_mix"] == {"snr_db": [0.0, 30.0], "p_background_mix": 0.6}  # the trainer's
    # never over an existing file, never over itself
    assert snap_train(["polish", str(src), "--data", str(FIX), "--out", str(out), "--steps", "5"]) == 2
    assert "exists" in capsys.readouterr().err
    assert snap_train(["polish", str(tmp_path / "missing.pt"), "--data", str(FIX), "--out", str(tmp_path / "x.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert snap_train(["polish", str(src), "--data", str(FIX), "--out", str(tmp_path / "y.pt"),
                       "--hard-positives", "1.5"]) == 2
    assert "--hard-positives" in capsys.readouterr().err


class _StripSampler:
    """Strips of 3 windows (window 4, hop 2) holding their own index, for exact bookkeeping."""

    class spec:
        window_samples = 4

    def __init__(self):
        self.i = 0

    def positive_strip(self, rng, hop):
        self.i += 1
        return np.full(4 + 2 * hop, float(self.i), dtype=np.float32) + np.arange(4 + 2 * hop) / 100, 3


def test_mining_hard_positives_keeps_missed_and_late_snaps_only():
    from trainer.finetune import mine_hard_positives

    # per snap (strip), the probabilities of its three windows
    probs = {1: [0.1, 0.3, 0.2],    # missed: its best window (1) and the neighbours 0, 2
             2: [0.95, 0.99, 0.9],  # heard at once: nothing to learn
             3: [0.2, 0.5, 0.97],   # heard two windows late: with early=0, window 0 is a hard positive
             4: [0.1, 0.96, 0.99]}  # heard one window late: with early=1, in time

    def score(wins):
        return np.array([probs[int(w[0])][int(round((w[0] % 1) * 100)) // 2] for w in wins])

    wins, counts = mine_hard_positives(score, _StripSampler(), 4, 0.937, 2, np.random.default_rng(0), early=1)
    assert counts == {"snaps": 4, "missed": 1, "late": 1}
    got = [(int(w[0]), int(round((w[0] % 1) * 100)) // 2) for w in wins]  # (snap, window index)
    assert got == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1)]
    assert mine_hard_positives(score, _StripSampler(), 0, 0.9, 2, np.random.default_rng(0)) == \
        ([], {"snaps": 0, "missed": 0, "late": 0})


def test_batches_draw_hard_positives_as_snaps_at_their_share():
    from trainer.finetune import BatchMaker, TuneConfig

    class Neg:
        def draw(self, rng):
            return np.zeros(8, dtype=np.float32), 0, "background"

    cfg = TuneConfig(batch=400, p_hard=0.0, p_user=1.0, p_hard_pos=0.25)
    bm = BatchMaker(Neg(), None, [], 8, 2, cfg)
    bm.hard_positives = [np.full(8, 0.5, dtype=np.float32)]
    x, y = bm(np.random.default_rng(1))
    pos = y == 1.0
    assert 0.17 < pos.mean() < 0.33  # about a quarter of the batch
    assert np.all(x[pos] > 0.3) and np.all(x[pos] < 0.8)  # the mined window, at a gain of -3..+3 dB
    assert np.all(x[~pos] == 0)


def test_polish_soup_is_the_average_of_single_polishes(tiny_run, tmp_path):
    """--soup 2 --seed 3 gives the element-wise mean of the polishes with seeds 3 and 4 (one thread:
    each polish is deterministic)."""
    from trainer.export import load_trainable

    common = ["--data", str(FIX), "--steps", "6", "--test-windows", "32", "--threads", "1", "--no-progress",
              "--background-speeds", "none", "--synthetic-drums", "20", "--lookalike-kits", "20",
              "--hard-positives", "0"]
    src = str(tiny_run / "model.pt")
    for name, extra in (("a", ["--seed", "3", "--soup", "1"]), ("b", ["--seed", "4", "--soup", "1"]),
                        ("ab", ["--seed", "3", "--soup", "2"])):
        assert snap_train(["polish", src, "--out", str(tmp_path / f"{name}.pt"), *common, *extra]) == 0
    a, b, ab = (load_trainable(tmp_path / f"{n}.pt")[0].state_dict() for n in ("a", "b", "ab"))
    base = load_trainable(src)[0].state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not np.allclose(a[k], b[k])]
    assert moved  # the two seeds polished differently, so the mean is a real test
    for k in a:
        if a[k].is_floating_point():
            np.testing.assert_allclose(ab[k].numpy(), ((a[k] + b[k]) / 2).numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            assert np.array_equal(ab[k].numpy(), base[k].numpy())
    info = load_model(tmp_path / "ab.pt").metadata.extra["polish"]
    assert [m["seed"] for m in info["soup"]] == [3, 4]


@pytest.mark.parametrize("flag,value", [("--soup", "0"), ("--soup", "17")])
def test_bad_soup_is_refused_naming_the_flag(tiny_run, tmp_path, capsys, flag, value):
    out = tmp_path / "p.pt"
    assert snap_train(["polish", str(tiny_run / "model.pt"), "--data", str(FIX), "--out", str(out), flag, value]) == 2
    assert flag in capsys.readouterr().err and not out.exists()


def test_polish_positive_mix_options_are_checked_by_name():
    from trainer.cli import UsageError
    from trainer.data import MixConfig
    from trainer.polish import positive_mix

    assert positive_mix(MixConfig(), None, None) == MixConfig()
    m = positive_mix(MixConfig(), "-3,25", 0.85)
    assert (m.snr_db, m.p_background_mix, m.p_positive) == ((-3.0, 25.0), 0.85, MixConfig().p_positive)
    for snr, share, flag in (("3", None, "--positive-snr"), ("25,-3", None, "--positive-snr"),
                             ("a,b", None, "--positive-snr"), (None, 1.5, "--positive-background")):
        with pytest.raises(UsageError, match=flag):
            positive_mix(MixConfig(), snr, share)
