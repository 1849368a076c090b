#!/usr/bin/env bash
# Set up snap-mqtt on a fresh Debian 12 / Python 3.11 machine: system packages (when missing),
# then a virtual environment in .venv with the project installed in editable mode.
#   scripts/setup.sh            listener only
#   scripts/setup.sh train test listener + trainer + test tools (extras)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
pkgs=(mosquitto mosquitto-clients libportaudio2 pulseaudio pulseaudio-utils)
# the trainer plays recorded claps, clicks and knocks from Hydrogen's drum kits (trainer/drumkits.py;
# ~140 MB, no dependencies) and, for evaluation only, a buckling-spring keyboard (trainer/keyboard.py;
# 2.6 MB)
case " $* " in *" train "*) pkgs+=(hydrogen-drumkits bucklespring-data) ;; esac
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
extras=""
if [ "$#" -gt 0 ]; then extras="[$(IFS=,; echo "$*")]"; fi
stamp=".venv/.snap-mqtt-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing snap-mqtt${extras} into .venv (torch is large: a minute or two the first time)"
  if [ -z "$extras" ] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    # Listener only: prefer a CPU-only torch build (a third of the CUDA build's memory). This
    # machine kind carries torch 2.13.0+cpu; elsewhere pip's choice stands.
    .venv/bin/python -m pip install -q "torch==2.13.0" 2>/dev/null || true
  fi
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
