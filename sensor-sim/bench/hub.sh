#!/usr/bin/env bash
# One bounded sensor-hub benchmark run (workloads H1-H5 in BENCHMARKS.md): a headless hub in one
# process, `sensor-sim sensors` in another, on loopback, with a fresh data directory.
#
#   sensor-sim/bench/hub.sh [--kill-at S --down-s S] -- SENSORS-ARGS...
#
# SENSORS-ARGS go to `sensor-sim sensors` (--count, --rate-hz, --loss, ...); --hub, --data-dir
# and --json are added. With --kill-at the hub is SIGKILLed S seconds after the sensors start
# and restarted on the same data directory --down-s seconds later (workload H4).
# Prints one JSON object: the sensors' summary (counted from the database) plus the hub's CPU
# seconds, its peak memory, and the load average (the machine is shared: read ratios, not
# absolutes). Build first: cargo build --release -p sensor-sim (or set SENSOR_SIM_BIN to compare
# two builds in the same session).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${SENSOR_SIM_BIN:-$root/target/release/sensor-sim}"
kill_at="" down_s=2
while [ $# -gt 0 ]; do
  case "$1" in
    --kill-at) kill_at=$2; shift 2 ;;
    --down-s) down_s=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (sensors arguments go after --)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "build first: cargo build --release -p sensor-sim" >&2; exit 2; }
dir=$(mktemp -d /tmp/sensor-hub-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
hub_cpu=0 hub_rss_kb=0 killed_cpu=0
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_of() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
start_hub() {
  "$bin" hub --headless --bind "127.0.0.1:$port" --data-dir "$dir" >"$dir/hub.out" 2>>"$dir/hub.err" &
  hub=$!
  for _ in $(seq 50); do grep -q "hub listening" "$dir/hub.err" 2>/dev/null && return; sleep 0.1; done
  echo "the hub did not start: $(cat "$dir/hub.err")" >&2; exit 1
}
account() { # add the hub's CPU and peak memory so far
  local c r; c=$(cpu_of "$hub"); r=$(rss_of "$hub")
  hub_cpu=$((hub_cpu + c)); [ "$r" -gt "$hub_rss_kb" ] && hub_rss_kb=$r || true
}
cleanup() {
  if [ -n "${hub:-}" ]; then kill -9 "$hub" 2>/dev/null || true; fi
  if [ -n "${killer:-}" ]; then kill -9 "$killer" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
start_hub
if [ -n "$kill_at" ]; then
  ( sleep "$kill_at"; echo kill >"$dir/kill" ) & killer=$!
fi
"$bin" sensors --hub "127.0.0.1:$port" --data-dir "$dir" --json "$@" >"$dir/summary.json" &
sensors=$!
if [ -n "$kill_at" ]; then
  while [ ! -e "$dir/kill" ]; do sleep 0.05; done
  killed_cpu=$(cpu_of "$hub"); account; kill -9 "$hub"; wait "$hub" 2>/dev/null || true
  sleep "$down_s"; start_hub
fi
wait "$sensors"
# CPU of the waited-for children: the sensors process (and a SIGKILLed hub, subtracted below).
times >"$dir/times"; children=$(tail -1 "$dir/times")
account
kill -TERM "$hub"; wait "$hub" 2>/dev/null || true
tck=$(getconf CLK_TCK)
python3 - "$dir/summary.json" "$hub_cpu" "$tck" "$hub_rss_kb" "$children" "$killed_cpu" <<'PY'
import json, os, re, sys
s = json.load(open(sys.argv[1]))
def secs(t):
    m = re.match(r"(\d+)m([\d.]+)s", t)
    return int(m.group(1)) * 60 + float(m.group(2))
user, system = sys.argv[5].split()
children_cpu = secs(user) + secs(system) - int(sys.argv[6]) / int(sys.argv[3])
s["hub_cpu_s"] = round(int(sys.argv[2]) / int(sys.argv[3]), 2)
s["hub_cpu_per_s"] = round(s["hub_cpu_s"] / max(s["elapsed_s"], 1e-9), 3)
s["sensors_cpu_per_s"] = round(max(children_cpu, 0) / max(s["elapsed_s"], 1e-9), 3)
s["hub_peak_rss_mb"] = round(int(sys.argv[4]) / 1024, 1)
s["loss_pct"] = round(100 * s["readings_lost"] / max(s["readings_sent"], 1), 4)
s["loadavg_1m"] = float(open("/proc/loadavg").read().split()[0])
print(json.dumps(s))
PY
