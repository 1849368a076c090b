"""`snap-train soup`: the weighted mean of fine-tunes of one model, written as a model file the
listener loads; mismatched files are refused by name; nothing is overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from snap_mqtt.model_file import load_model
from trainer import cli
from trainer.data import WindowSpec
from trainer.export import build_metadata, export_model, load_trainable
from trainer.model import ModelConfig, SnapNet


def _model(path: Path, seed: int, threshold: float, cfg: ModelConfig = ModelConfig()) -> Path:
    torch.manual_seed(seed)
    net = SnapNet(cfg)
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 4000) * 0.05)  # BatchNorm statistics of its own
    export_model(net.eval(), build_metadata(net.cfg, WindowSpec(), 320, threshold), path)
    return path


def test_soup_is_the_weighted_mean_and_keeps_the_first_files_metadata(tmp_path: Path, capsys):
    a, b = _model(tmp_path / "a.pt", 1, 0.9), _model(tmp_path / "b.pt", 2, 0.7)
    out = tmp_path / "s.pt"
    assert cli.main(["soup", str(a), str(b), "--out", str(out), "--weights", "3,1"]) == 0
    na, nb, ns = (load_trainable(p)[0].state_dict() for p in (a, b, out))
    for k, v in ns.items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * na[k] + 0.25 * nb[k], atol=1e-6), k
    moved = [k for k, v in ns.items() if v.is_floating_point() and not torch.equal(v, na[k])]
    assert len(moved) >= 10  # every layer's weights moved: not a copy of the first file
    m = load_model(out)  # a model file like any other: the listener runs it
    assert m.metadata.threshold == pytest.approx(0.9)
    assert [r["weight"] for r in m.metadata.extra["soup"]] == [0.75, 0.25]
    assert m.predict(torch.zeros(2, 4000)).shape == (2,)
    assert str(out) in capsys.readouterr().out
    # nothing is overwritten
    assert cli.main(["soup", str(a), str(b), "--out", str(out)]) == 2


def test_soup_refuses_other_architectures_and_bad_weights_by_name(tmp_path: Path, capsys):
    a = _model(tmp_path / "a.pt", 1, 0.9)
    c = _model(tmp_path / "c.pt", 3, 0.9, ModelConfig(channels=(4, 8, 16, 32)))
    assert cli.main(["soup", str(a), str(c), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert str(c) in err and not (tmp_path / "x.pt").exists()
    assert cli.main(["soup", str(a), str(a), "--out", str(tmp_path / "y.pt"), "--weights", "1,-1"]) == 2
    assert "--weights" in capsys.readouterr().err
    assert cli.main(["soup", str(a), "--out", str(tmp_path / "z.pt")]) == 2


def test_soup_measures_its_own_test_figures_or_none(tmp_path: Path, capsys):
    """The first file's window-level figures belong to other weights: with --data the soup's own are
    measured on the held-out test windows of the fixture clips, without it none are carried over."""
    fix = Path(__file__).resolve().parent / "fixtures" / "audio"
    a, b = _model(tmp_path / "a.pt", 1, 0.5), _model(tmp_path / "b.pt", 2, 0.5)
    stale = {"precision": 0.123, "recall": 0.456, "f1": 0.2, "auroc": 0.9, "accuracy": 0.5}
    na, _ = load_trainable(a)
    export_model(na, build_metadata(na.cfg, WindowSpec(), 320, 0.5, test_metrics=stale), a, overwrite=True)
    plain, measured = tmp_path / "plain.pt", tmp_path / "measured.pt"
    assert cli.main(["soup", str(a), str(b), "--out", str(plain)]) == 0
    assert load_model(plain).metadata.test_metrics == {}
    assert cli.main(["soup", str(a), str(b), "--out", str(measured), "--data", str(fix), "--test-windows", "64"]) == 0
    tm = load_model(measured).metadata.test_metrics
    assert tm["windows"] == 64 and 0 < tm["positives"] < 64
    assert tm["precision"] != stale["precision"] and 0.0 <= tm["auroc"] <= 1.0
    assert sum(tm["confusion"].values()) == 64
    assert "test windows: precision" in capsys.readouterr().out
    assert cli.main(["soup", str(a), str(b), "--out", str(tmp_path / "x.pt"), "--data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
