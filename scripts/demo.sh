#!/usr/bin/env bash
# The main job, end to end: set up, then listen and publish snaps to MQTT, showing each message
# as it arrives.
#   scripts/demo.sh            microphone if this machine has an input device, else the demo
#                              recording (demo/demo-scene.flac: a single, a double, a triple snap)
#   scripts/demo.sh --file     always the demo recording (ends when the recording ends)
#   scripts/demo.sh --mic      always the microphone (Ctrl-C to stop)
#   scripts/demo.sh --file --speed 4   replay faster
# Broker: SNAP_MQTT__HOST / SNAP_MQTT__PORT (and the other SNAP_ settings) if set; otherwise a
# local Mosquitto is started on a free port for the demo and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=auto
speed=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    --file) mode=file ;;
    --mic) mode=mic ;;
    --speed) speed="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

# set up unless an earlier setup (any extras) is newer than pyproject.toml and Mosquitto is there
stamp=$(ls -t .venv/.snap-mqtt-installed* 2>/dev/null | head -1 || true)
if [ -z "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! command -v mosquitto_sub >/dev/null \
   || ! { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; }; then
  scripts/setup.sh
fi
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${tmpdir:-}" ] && rm -rf "$tmpdir"
  [ -n "${subcfg:-}" ] && rm -rf "$subcfg"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${SNAP_MQTT__HOST:-}" ]; then
  tmpdir=$(mktemp -d)
  chmod 755 "$tmpdir"
  port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$tmpdir/mosquitto.conf"
  mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  "$mosquitto_bin" -c "$tmpdir/mosquitto.conf" >"$tmpdir/mosquitto.log" 2>&1 &
  pids+=("$!")
  export SNAP_MQTT__HOST=127.0.0.1 SNAP_MQTT__PORT=$port
  for _ in $(seq 50); do
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  echo "demo: started a local Mosquitto on 127.0.0.1:$port (set SNAP_MQTT__HOST to use your own broker)"
fi
host=$SNAP_MQTT__HOST
port=${SNAP_MQTT__PORT:-1883}
base=${SNAP_BASE_TOPIC:-snap_mqtt}

if [ "$mode" = auto ]; then
  n=$($PY -m snap_mqtt.cli devices --json 2>/dev/null | grep -c '"index"' || true)
  if [ "${n:-0}" -gt 0 ]; then mode=mic; else mode=file; fi
fi

sub_args=(-h "$host" -p "$port" -t "$base/#" -F '  mqtt> %t %p')
[ -n "${SNAP_MQTT__USERNAME:-}" ] && sub_args+=(-u "$SNAP_MQTT__USERNAME")
subcfg=$(mktemp -d)
chmod 700 "$subcfg"
# the password goes to mosquitto_sub through its config file, never onto a command line (ps)
[ -n "${SNAP_MQTT__PASSWORD:-}" ] && printf -- '-P %s\n' "$SNAP_MQTT__PASSWORD" > "$subcfg/mosquitto_sub"
XDG_CONFIG_HOME=$subcfg mosquitto_sub "${sub_args[@]}" &
pids+=("$!")
sleep 0.3

if [ "$mode" = mic ]; then
  echo "demo: listening on the microphone: snap once, twice, three times (Ctrl-C to stop)"
  $PY -m snap_mqtt.cli listen &
else
  echo "demo: no microphone used: replaying demo/demo-scene.flac (a single snap at 2 s, a double at 8 s,"
  echo "      a triple at 15 s; 22 s at speed ${speed}x)"
  $PY -m snap_mqtt.cli listen --input demo/demo-scene.flac --speed "$speed" &
fi
listener=$!
set +e
wait "$listener"
rc=$?
set -e
sleep 0.5  # let the last messages (and "offline") print
echo "demo: listener exited with status $rc"
exit "$rc"
