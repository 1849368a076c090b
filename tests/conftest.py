"""Shared fixtures: real Mosquitto, real PulseAudio, committed audio fixtures, one torch thread."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from services import Broker, Pulse, start_pulse  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# PulseAudio must be up before PortAudio (sounddevice) is imported anywhere in this process.
_PULSE: Pulse | None = start_pulse()

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_unconfigure(config):
    if _PULSE is not None:
        _PULSE.stop()


@pytest.fixture(scope="session")
def pulse() -> Pulse:
    if _PULSE is None:
        pytest.fail("PulseAudio is not installed: run scripts/setup.sh")
    return _PULSE


@pytest.fixture
def broker():
    b = Broker.create().start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
