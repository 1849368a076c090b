"""The numpy filters in snap_mqtt.dsp are scipy's designs (the listener avoids importing scipy)."""

import numpy as np
import pytest
import scipy.signal as ss

from snap_mqtt.dsp import butter_highpass_ir, convolve_causal, kaiser_lowpass


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_highpass_matches_scipy_butter_sosfilt(rate):
    x = np.random.default_rng(rate).standard_normal(3 * rate // 2)
    ref = ss.sosfilt(ss.butter(4, 1500.0, "highpass", fs=rate, output="sos"), x)
    y = convolve_causal(x, butter_highpass_ir(4, 1500.0, rate))
    assert np.abs(y - ref).max() < 1e-7 * np.abs(ref).max()


def test_long_signals_take_the_fft_path_with_the_same_result():
    x = np.random.default_rng(1).standard_normal(200_000)
    h = butter_highpass_ir(4, 1500.0, 48000)
    assert len(x) * len(h) > 4_000_000
    ref = ss.sosfilt(ss.butter(4, 1500.0, "highpass", fs=48000, output="sos"), x)
    assert np.abs(convolve_causal(x, h) - ref).max() < 1e-7


@pytest.mark.parametrize("up,down", [(160, 441), (1, 3), (2, 3), (1, 6)])
def test_kaiser_lowpass_matches_scipy_firwin(up, down):
    n = 2 * 10 * max(up, down) + 1
    ref = ss.firwin(n, 1.0 / max(up, down), window=("kaiser", 5.0))
    assert np.allclose(kaiser_lowpass(n, 1.0 / max(up, down), 5.0), ref, atol=1e-12)


def test_the_listener_path_does_not_import_scipy():
    import subprocess
    import sys

    code = ("import sys; import snap_mqtt.listener, snap_mqtt.pipeline, snap_mqtt.capture, "
            "snap_mqtt.mqtt_client, snap_mqtt.cmd_listen, snap_mqtt.detector, snap_mqtt.onset; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
