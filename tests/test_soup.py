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
