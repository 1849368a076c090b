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


def _shareable_log(workdir: Path) -> None:
    """Started as root, mosquitto drops to the 'mosquitto' user, which cannot create files in a
    0700 temporary folder: open the folder and pre-create the log so `Broker.log` has content."""
    os.chmod(workdir, 0o755)
    log = workdir / "mosquitto.log"
    log.touch()
    os.chmod(log, 0o666)


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
        _shareable_log(workdir)
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


# --- Brokers with a password file and a TLS listener (robustness tests) -------------------------


@dataclass
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(workdir: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed test CA (EC P-256: quick to generate). Returns (cert, key)."""
    key, cert = workdir / f"{name}.key", workdir / f"{name}.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=workdir)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "2",
             "-subj", f"/CN=snap-mqtt test {name}", "-out", str(cert), cwd=workdir)
    return cert, key


def make_tls_files(workdir: Path) -> TlsFiles:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    ca_cert, ca_key = make_ca(workdir, "ca")
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    ext = workdir / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=workdir)
    _openssl("req", "-new", "-key", str(key), "-subj", "/CN=localhost", "-out", str(csr), cwd=workdir)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
             cwd=workdir)
    return TlsFiles(ca_cert=ca_cert, ca_key=ca_key, server_cert=cert, server_key=key)


@dataclass
class SecureBroker(Broker):
    """A real mosquitto that needs a username and password on every listener: a plaintext
    listener on `port` and, with tls=True, a TLS listener on `tls_port`. Every connection
    attempt is logged, so a test can tell which port a client reached."""

    tls_port: int | None = None
    tls: TlsFiles | None = None
    users: dict[str, str] | None = None

    @classmethod
    def create_secure(cls, users: dict[str, str], tls: bool = True) -> "SecureBroker":
        workdir = Path(tempfile.mkdtemp(prefix="snap-mosq-secure-"))
        port = free_port()
        pwfile = workdir / "passwd"
        exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for i, (user, password) in enumerate(users.items()):
            subprocess.run([exe, "-b", *(["-c"] if i == 0 else []), str(pwfile), user, password],
                           check=True, capture_output=True)
        os.chmod(pwfile, 0o644)
        _shareable_log(workdir)
        conf = workdir / "mosquitto.conf"
        lines = [
            "per_listener_settings false", "allow_anonymous false", f"password_file {pwfile}",
            "persistence false", f"log_dest file {workdir}/mosquitto.log", "log_type all",
            f"listener {port} 127.0.0.1",
        ]
        files = tls_port = None
        if tls:
            files = make_tls_files(workdir)
            tls_port = free_port()
            os.chmod(files.server_key, 0o644)  # readable by the 'mosquitto' user (test key only)
            lines += [f"listener {tls_port} 127.0.0.1", f"cafile {files.ca_cert}",
                      f"certfile {files.server_cert}", f"keyfile {files.server_key}"]
        conf.write_text("\n".join(lines) + "\n")
        return cls(port=port, workdir=workdir, conf=conf, tls_port=tls_port, tls=files, users=users)

    def start(self) -> "SecureBroker":
        super().start()
        if self.tls_port:
            wait_port(self.tls_port)
        return self

    def connections_on(self, port: int) -> int:
        """How many connections the broker accepted on `port` (from its log)."""
        return self.log.count(f" on port {port}.")

    def tls_attempts(self) -> int:
        """How many clients reached the TLS listener. mosquitto 2.0.11 logs 'New connection ... on
        port N.' for the first failed handshake only; later ones it logs as 'Client connection
        from ... failed: ... SSL routines ...' without the port (only TLS gives SSL errors)."""
        lines = self.log.splitlines()
        return sum(f" on port {self.tls_port}." in ln or ("Client connection from" in ln and "SSL routines" in ln)
                   for ln in lines)
