"""Streaming polyphase resampling: the same filter as `scipy.signal.resample_poly`, applied block
by block with its state carried over, so the output does not depend on how the input is chunked.

Output sample m sits at input time m * down / up (no added delay in the time base): it is computed
once the input samples its filter needs have arrived, i.e. about `latency` seconds later. Input
before the stream start counts as silence, as in resample_poly.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from snap_mqtt.dsp import kaiser_lowpass


_CHUNK_OUT = 4096  # output samples computed per vectorised step


class StreamingResampler:
    def __init__(self, rate_in: int, rate_out: int):
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in = int(rate_in)
        self.rate_out = int(rate_out)
        frac = Fraction(self.rate_out, self.rate_in).limit_denominator(1000)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = self.up == self.down
        if not self.identity:
            # the filter resample_poly designs for the same up/down
            max_rate = max(self.up, self.down)
            half_len = 10 * max_rate
            h = kaiser_lowpass(2 * half_len + 1, 1.0 / max_rate, 5.0) * self.up
            self._delay = half_len  # in upsampled samples: centres the filter on the output instant
            taps = -(-len(h) // self.up)  # input samples per output
            hp = np.zeros(taps * self.up)
            hp[: len(h)] = h
            # row p: coefficients for phase p, applied to x[j], x[j-1], ..., x[j-taps+1]
            self._phases = hp.reshape(taps, self.up).T.copy()
            self._taps = taps
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0  # absolute input index of _buf[0]
        self._n_in = 0
        self._next_out = 0

    @property
    def latency(self) -> float:
        """Seconds of input needed beyond an output instant before that output can be computed."""
        return 0.0 if self.identity else (self._delay / self.up) / self.rate_in

    def reset(self) -> None:
        """Start afresh (after an audio gap): the next input is a new stream."""
        self.__init__(self.rate_in, self.rate_out)  # type: ignore[misc]

    def process(self, x: np.ndarray) -> np.ndarray:
        """Mono float samples in, the output samples they complete out (float32)."""
        x = np.asarray(x, dtype=np.float32)
        if self.identity:
            return x
        if len(x):
            self._buf = np.concatenate([self._buf, x.astype(np.float64)])
            self._n_in += len(x)
        # output m is ready when its newest input j = (m*down + delay) // up has arrived
        last = (self._n_in * self.up - 1 - self._delay) // self.down
        return self._produce(last + 1)

    def flush(self) -> np.ndarray:
        """End of stream: the remaining outputs, as resample_poly would give (input padded with
        silence), ceil(n_in * up / down) outputs in all."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self.up // self.down)
        return self._produce(total)

    def _produce(self, stop: int) -> np.ndarray:
        if stop <= self._next_out:
            return np.zeros(0, dtype=np.float32)
        # in chunks: the gather below holds outputs x taps float64 values (a 10 s block at
        # 96 kHz made ~400 MB of temporaries); the result is the same, chunked or not
        parts = []
        while self._next_out < stop:
            parts.append(self._produce_chunk(min(stop, self._next_out + _CHUNK_OUT)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _produce_chunk(self, stop: int) -> np.ndarray:
        m = np.arange(self._next_out, stop)
        n = m * self.down + self._delay
        j = n // self.up  # newest input sample used
        phase = n % self.up
        idx = j[:, None] - np.arange(self._taps)[None, :] - self._buf_start
        valid = (idx >= 0) & (idx < len(self._buf))  # before the stream / after the end: silence
        xs = np.where(valid, self._buf[np.clip(idx, 0, max(len(self._buf) - 1, 0))] if len(self._buf) else 0.0, 0.0)
        y = (xs * self._phases[phase]).sum(axis=1)
        self._next_out = stop
        # drop input no longer needed by the next output
        keep_from = (self._next_out * self.down + self._delay) // self.up - self._taps + 1
        drop = min(max(0, keep_from - self._buf_start), len(self._buf))
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return y.astype(np.float32)
