"""The front end's input level (trainer.model.InputLevel): quiet windows raised towards a standard
peak by a bounded gain, inside the model file, and `snap-train tune --input-level` writing it into a
copy of a real model file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snap_mqtt.model_file import default_model_path, load_model
from tests import test_tune
from trainer import cli
from trainer.data import WindowSpec
from trainer.export import build_metadata, export_model, load_trainable
from trainer.model import InputLevel, ModelConfig, SnapNet, parse_input_level, with_input_level

val_scenes = test_tune.val_scenes  # the fixture: validation scenes built from the committed fixtures


def _peaks(x: torch.Tensor) -> list[float]:
    return [round(float(v), 5) for v in x.abs().amax(dim=1)]


def test_input_level_raises_quiet_windows_by_at_most_the_largest_gain_and_never_lowers():
    level = InputLevel(-6.0, 12.0)  # towards 0.501 peak, by at most x3.98
    x = torch.zeros(4, 100)
    x[0, 10], x[1, 20], x[2, 30], x[3, 40] = 0.01, -0.3, 0.8, 0.0
    x[0, 50] = 0.004  # the rest of a window scales with its peak
    y = level(x)
    gain = 10 ** (12 / 20)
    assert _peaks(y) == pytest.approx([0.01 * gain, 10 ** (-6 / 20), 0.8, 0.0], abs=1e-5)
    assert float(y[0, 50] / y[0, 10]) == pytest.approx(0.4)  # the window's own SNR is kept
    assert float(y[1, 20]) < 0  # sign kept
    assert torch.equal(InputLevel(-6.0, 0.0)(x), x)  # a gain of 0 dB: off


def test_parse_input_level_names_what_is_wrong():
    assert parse_input_level("-6,12") == (-6.0, 12.0)
    assert parse_input_level("-10,0") == (-10.0, 0.0)
    for bad, words in (("-6", "TARGET_DB,MAX_GAIN_DB"), ("a,b", "TARGET_DB"), ("3,12", "target peak"),
                       ("-6,-1", "largest gain"), ("-6,50", "largest gain")):
        with pytest.raises(ValueError, match=words):
            parse_input_level(bad)


def test_a_model_file_with_the_input_level_scores_a_quiet_window_as_its_base_scores_it_raised(tmp_path: Path):
    torch.manual_seed(0)
    base = SnapNet(ModelConfig()).eval()
    levelled = with_input_level(base, -6.0, 12.0)
    assert levelled.cfg.level_max_gain_db == 12.0 and not levelled.training
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), levelled.state_dict().values()))
    path = tmp_path / "m.pt"
    export_model(levelled, build_metadata(levelled.cfg, WindowSpec(), 320, 0.5), path)
    m = load_model(path)
    assert "12 dB" in m.metadata.architecture
    quiet = torch.randn(3, 4000) * 0.002
    quiet[:, 2000] = 0.05  # peak -26 dBFS: raised by the full 12 dB
    loud = torch.randn(2, 4000) * 0.05
    loud[:, 100] = 0.9  # above the target: untouched
    with torch.no_grad():
        assert torch.allclose(m.predict(quiet), torch.sigmoid(base(quiet * 10 ** (12 / 20))), atol=1e-5)
        assert torch.allclose(m.predict(loud), torch.sigmoid(base(loud)), atol=1e-5)
        assert not torch.allclose(m.predict(quiet), torch.sigmoid(base(quiet)), atol=1e-3)
    again, _ = load_trainable(path)  # fine-tuning keeps it
    assert again.cfg == levelled.cfg


def test_files_written_before_the_input_level_existed_load_with_it_off():
    cfg = load_model(default_model_path()).metadata.extra["model_config"]
    legacy = {k: v for k, v in cfg.items() if not k.startswith("level_")}
    assert ModelConfig.from_dict(legacy).level_max_gain_db == 0.0


def test_tune_input_level_writes_it_into_the_copy(val_scenes: Path, tmp_path: Path, capsys):
    base = default_model_path()
    out = tmp_path / "levelled.pt"
    assert cli.main(["tune", str(base), "--scenes", str(val_scenes), "--out", str(out),
                     "--candidates", "0.5", "--input-level=-6,12"]) == 0
    new, old = load_model(out), load_model(base)
    cfg = new.metadata.extra["model_config"]
    assert (cfg["level_target_db"], cfg["level_max_gain_db"]) == (-6.0, 12.0)
    assert new.metadata.extra["tune"]["input_level"] == "-6,12"
    assert new.metadata.threshold == old.metadata.threshold
    quiet = torch.randn(2, 4000) * 0.001
    quiet[:, 3000] = 0.03
    assert torch.allclose(new.predict(quiet), old.predict(quiet * 10 ** (12 / 20)), atol=1e-5)
    # what tune printed was measured with the level: evaluate on the copy gives the same point
    point = new.metadata.extra["tune"]["points"][1]
    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--model", str(out), "--scenes", str(val_scenes), "--out", str(ev),
                     "--sweep", "0.5", "--baselines", "none", "--follow-threshold", "0.5"]) == 0
    ours = json.loads((ev / "evaluation.json").read_text())["detectors"]["ours"]
    assert ours["snaps"]["f1"] == pytest.approx(point["f1"])
    capsys.readouterr()
    assert cli.main(["tune", str(base), "--scenes", str(val_scenes), "--out", str(tmp_path / "bad.pt"),
                     "--input-level=-6,99"]) == 2
    assert "--input-level" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()
