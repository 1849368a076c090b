"""Real services for the tests: a Mosquitto broker on a free loopback port and a PulseAudio
daemon with a null sink whose monitor is the default capture device."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SINK = "snapsink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@dataclass
class Broker:
    """A real mosquitto process. stop()/start() simulate a broker restart on the same port."""

    port: int
    workdir: Path
    conf: Path
    proc: subprocess.Popen | None = None

    @classmethod
    def create(cls, port: int | None = None, extra_conf: str = "") -> "Broker":
        workdir = Path(tempfile.mkdtemp(prefix="snap-mosq-"))
        port = port or free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {workdir}/mosquitto.log\n{extra_conf}"
        )
        return cls(port=port, workdir=workdir, conf=conf)

    def start(self) -> "Broker":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        p = self.workdir / "mosquitto.log"
        return p.read_text() if p.exists() else ""


@dataclass
class Pulse:
    """A PulseAudio daemon with a null sink; `play(file)` plays into the sink, whose monitor is
    the default input that sounddevice captures."""

    runtime_dir: Path
    proc: subprocess.Popen
    warm: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def play(self, path: str | os.PathLike[str]) -> subprocess.Popen:
        return subprocess.Popen(["paplay", f"--device={SINK}", str(path)], env=self.env)

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def stop(self) -> None:
        for p in (self.warm, self.proc):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


def start_pulse() -> Pulse | None:
    """Start PulseAudio (None where it is not installed). Sets XDG_RUNTIME_DIR for this process,
    so it must run before PortAudio (sounddevice) is first imported."""
    if not shutil.which("pulseaudio"):
        return None
    runtime = Path(tempfile.mkdtemp(prefix="snap-pulse-"))
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    env = {**os.environ}
    proc = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--disallow-exit",
         "--load=module-native-protocol-unix", f"--load=module-null-sink sink_name={SINK}",
         "--log-target=stderr"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("PulseAudio did not start")
    subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], env=env, capture_output=True)
    subprocess.run(["pactl", "set-default-sink", SINK], env=env, capture_output=True)
    # keep the monitor warm: a cold monitor can take 1-2 s to deliver a stream's first block
    warm = subprocess.Popen(["parec", "-d", f"{SINK}.monitor", "--raw"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Pulse(runtime_dir=runtime, proc=proc, warm=warm)
