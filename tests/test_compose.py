"""Deployment files: docker-compose.yml validated by the real docker-compose client (no container
engine runs here, so the image build itself is not tested), and checked against the settings."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from snap_mqtt.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_docker_compose_config_is_valid():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (scripts/test.sh installs it)"
    r = subprocess.run([exe, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_services_fit_the_listener(monkeypatch, tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "snap-mqtt"}
    mosq = services["mosquitto"]
    conf = [v.split(":")[0] for v in mosq["volumes"] if v.endswith("mosquitto.conf:ro")]
    assert conf and (ROOT / conf[0]).is_file()
    listener = services["snap-mqtt"]
    assert listener["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert "/dev/snd:/dev/snd" in listener["devices"]
    env = listener["environment"]
    assert env["SNAP_MQTT__HOST"] == "mosquitto"
    # every SNAP_ variable the compose file sets is a setting the listener accepts
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("SNAP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        assert key.startswith("SNAP_")
        value = str(value)
        if value.startswith("${"):  # ${VAR:-default}
            value = value.split(":-", 1)[1].rstrip("}")
        monkeypatch.setenv(key, value)
    s = Settings.load()
    assert s.mqtt.host == "mosquitto" and s.node_id == "snapbox" and s.audio.device is None


def test_dockerfile_uses_the_tested_install_steps():
    text = (ROOT / "Dockerfile").read_text()
    assert "scripts/setup.sh" in text
    assert 'ENTRYPOINT ["snap-mqtt"]' in text and "STOPSIGNAL SIGTERM" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_systemd_unit_example():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(ROOT / "deploy" / "snap-mqtt.service")
    svc = unit["Service"]
    assert svc["ExecStart"].split()[0].endswith("/snap-mqtt") and " listen" in svc["ExecStart"]
    assert "-HUP" in svc["ExecReload"]
    assert svc["KillSignal"] == "SIGTERM"
    assert "audio" in (svc.get("Group", "") + svc.get("SupplementaryGroups", ""))
    assert unit["Install"]["WantedBy"] == "multi-user.target"
