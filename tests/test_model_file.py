"""The model file contract: export -> load round trip, metadata, refusal of files that are not
snap models, fine-tuning round trip, and the shipped default model."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from snap_mqtt.model_file import (FORMAT, METADATA_NAME, ModelFileError, ModelMetadata, default_model_path,
                                  load_model)
from trainer.data import WindowSpec
from trainer.export import build_metadata, export_model, load_trainable, window_spec_of
from trainer.model import ModelConfig, SnapNet


@pytest.fixture(scope="module")
def net() -> SnapNet:
    torch.manual_seed(0)
    n = SnapNet(ModelConfig())
    # non-trivial BatchNorm statistics, so eval mode differs from training mode
    n.train()
    with torch.no_grad():
        for _ in range(3):
            n(torch.randn(16, 4000) * 0.05)
    return n.eval()


@pytest.fixture(scope="module")
def exported(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pt"
    meta = build_metadata(net.cfg, WindowSpec(), 320, 0.42, data={"clips": 3}, test_metrics={"f1": 0.5})
    export_model(net, meta, path)
    return path


def test_round_trip_outputs_and_metadata(net, exported):
    m = load_model(exported)
    md = m.metadata
    assert md.format == FORMAT and md.threshold == pytest.approx(0.42)
    assert (md.sample_rate, md.window_samples, md.hop_samples) == (16000, 4000, 320)
    assert (md.onset_min_samples, md.onset_max_samples) == (1440, 3360)
    assert md.data == {"clips": 3} and md.test_metrics == {"f1": 0.5}
    assert md.extra["model_config"] == net.cfg.to_dict()
    x = torch.randn(5, 4000) * 0.1
    p = m.predict(x)  # inside torch.inference_mode, as the listener calls it
    assert p.shape == (5,) and bool(((p >= 0) & (p <= 1)).all())
    with torch.no_grad():
        assert torch.allclose(p, torch.sigmoid(net(x)), atol=1e-5)
    assert stat.S_IMODE(os.stat(exported).st_mode) & 0o044  # readable by others


def test_export_never_overwrites_without_permission(net, exported):
    before = exported.read_bytes()
    meta = build_metadata(net.cfg, WindowSpec(), 320, 0.6)
    with pytest.raises(FileExistsError, match="exists"):
        export_model(net, meta, exported)
    assert exported.read_bytes() == before


def test_load_trainable_restores_the_same_network(net, exported):
    net2, md = load_trainable(exported)
    net2.eval()
    x = torch.randn(3, 4000) * 0.1
    with torch.no_grad():
        assert torch.allclose(net2(x), net(x), atol=1e-5)
    assert all(p.requires_grad for p in net2.parameters())
    assert window_spec_of(md) == WindowSpec()


def test_scripted_file_without_metadata_is_refused(net, tmp_path):
    p = tmp_path / "plain.pt"
    torch.jit.script(torch.nn.Linear(2, 1)).save(str(p))
    with pytest.raises(ModelFileError, match="not a snap model") as e:
        load_model(p)
    assert str(p) in str(e.value)


def test_wrong_format_marker_is_refused(tmp_path):
    p = tmp_path / "other.pt"
    meta = json.loads(ModelMetadata(16000, 4000, 320, 0.5, "x").to_json())
    meta["format"] = "some-other-model"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(p), _extra_files={METADATA_NAME: json.dumps(meta)})
    with pytest.raises(ModelFileError, match="not a snap-mqtt model"):
        load_model(p)


@pytest.mark.parametrize("follow", [0.7, 0.0, -0.2])
def test_follow_threshold_must_lie_between_zero_and_the_threshold(tmp_path, follow):
    p = tmp_path / "follow.pt"
    meta = ModelMetadata(16000, 4000, 320, 0.5, "x", follow_threshold=follow)
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(p), _extra_files={METADATA_NAME: meta.to_json()})
    with pytest.raises(ModelFileError, match="follow_threshold") as e:
        load_model(p)
    assert str(p) in str(e.value)
    ok = ModelMetadata(16000, 4000, 320, 0.5, "x", follow_threshold=0.3)
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(p), _extra_files={METADATA_NAME: ok.to_json()})
    assert load_model(p).metadata.follow_threshold == 0.3


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04garbage"])
def test_junk_files_are_refused_naming_the_file(tmp_path, content):
    p = tmp_path / "junk.pt"
    p.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        load_model(p)
    assert str(p) in str(e.value)


def test_model_without_model_config_cannot_be_fine_tuned(tmp_path):
    p = tmp_path / "foreign.pt"
    meta = ModelMetadata(16000, 4000, 320, 0.5, "x")
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(p), _extra_files={METADATA_NAME: meta.to_json()})
    with pytest.raises(ModelFileError, match="model_config"):
        load_trainable(p)


def test_shipped_default_model():
    path = default_model_path()
    assert path.is_file(), "models/snap-default.pt is missing"
    m = load_model(path)
    md = m.metadata
    assert md.window_samples > md.onset_max_samples > md.onset_min_samples >= 0
    assert md.hop_samples <= md.onset_max_samples - md.onset_min_samples  # every snap meets a positive window
    with zipfile.ZipFile(path) as z:
        assert any(n.endswith(f"extra/{METADATA_NAME}") for n in z.namelist())
    p = m.predict(torch.zeros(2, md.window_samples))
    assert p.shape == (2,) and bool(torch.isfinite(p).all())
    # silence is not a snap
    quiet = torch.from_numpy(np.random.default_rng(0).normal(0, 1e-4, (4, md.window_samples)).astype(np.float32))
    assert float(m.predict(quiet).max()) < md.threshold
