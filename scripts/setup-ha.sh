#!/usr/bin/env bash
# Set up the Home Assistant used by the end-to-end test (tests/test_home_assistant.py): HA 2024.3.3
# in its own virtual environment, outside the repository so repeated runs on one machine reuse it.
# HA pins paho-mqtt 1.6 and pydantic 1, so it cannot share the project's .venv.
# Idempotent: does nothing when the venv is complete (stamp file), otherwise (re)builds it.
#   SNAP_HA_VENV   where the venv lives (default ~/.cache/snap-mqtt/ha-2024.3.3)
#   PYTHON         the Python 3.11 to build it with (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

HA_VERSION=2024.3.3
VENV=${SNAP_HA_VENV:-$HOME/.cache/snap-mqtt/ha-$HA_VERSION}
PY=${PYTHON:-python3}
# Integrations the test's configuration.yaml names (tests/ha.py); HA always adds its default set
# (frontend, person, backup, ...). Their PyPI requirements, and their dependencies', are installed
# here, so HA's first start needs no network and takes seconds.
INTEGRATIONS="api auth automation config device_automation http input_boolean mqtt onboarding websocket_api"
stamp="$VENV/.snap-mqtt-ha-complete"

if [ -f "$stamp" ] && [ -x "$VENV/bin/hass" ]; then
  exit 0
fi
# one build at a time (two test runs on one machine); the second then finds it done
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ -f "$stamp" ] && [ -x "$VENV/bin/hass" ]; then
  exit 0
fi

# pip, quiet, less the notes a machine's extra local indexes print for every missing name
ha_pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; }

start=$(date +%s)
echo "setup-ha: building Home Assistant $HA_VERSION in $VENV (a few minutes the first time)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "setup-ha: Home Assistant $HA_VERSION needs Python 3.11; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  ha_pip install -q --upgrade pip wheel
fi

# HA's own constraints file ships inside its wheel; josepy 2 (a dependency of acme) breaks it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ha_pip download -q --no-deps --only-binary=:all: -d "$work" "homeassistant==$HA_VERSION"
"$VENV/bin/python" - "$work" <<'EOF'
import sys, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
wheel = next(work.glob("homeassistant-*.whl"))
text = zipfile.ZipFile(wheel).read("homeassistant/package_constraints.txt").decode()
(work / "constraints.txt").write_text(text + "\njosepy<2\n")
EOF
ha_pip install -q -c "$work/constraints.txt" "$work"/homeassistant-*.whl

# The requirements of the integrations the test loads, following each manifest's dependencies.
"$VENV/bin/python" - "$INTEGRATIONS" > "$work/integration-requirements.txt" <<'EOF'
import json, sys, pathlib
import homeassistant.components as components
from homeassistant import bootstrap
root = pathlib.Path(components.__path__[0])
wanted = set(sys.argv[1].split()) | bootstrap.CORE_INTEGRATIONS | bootstrap.DEFAULT_INTEGRATIONS
todo = [n for n in sorted(wanted) if (root / n / "manifest.json").exists()]
seen, reqs = set(), []
while todo:
    name = todo.pop()
    if name in seen:
        continue
    seen.add(name)
    manifest = json.loads((root / name / "manifest.json").read_text())
    reqs += manifest.get("requirements", [])
    todo += manifest.get("dependencies", [])
print("\n".join(sorted(set(reqs))))
EOF
if [ -s "$work/integration-requirements.txt" ]; then
  ha_pip install -q -c "$work/constraints.txt" -r "$work/integration-requirements.txt"
fi
"$VENV/bin/hass" --version >/dev/null
touch "$stamp"
echo "setup-ha: Home Assistant $HA_VERSION ready in $VENV ($(( $(date +%s) - start )) s)"
