#!/usr/bin/env bash
# Benchmark G1 (shared/workloads.md): a demo-game server at 60 Hz tick / 30 Hz snapshots and
# N bots (default 64) in another process, over loopback, for 30 s. Prints the server's and the
# bots' JSON summaries. Usage: demo-game/bench-g1.sh [BOTS] [PORT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bots=${1:-64}
port=${2:-7797}
cargo build --release -p demo-game >&2
bin=target/release/demo-game
"$bin" server --bind "127.0.0.1:$port" --tick-hz 60 --snapshot-hz 30 --duration-s 34 --json \
    > "/tmp/g1-server-$port.json" 2> "/tmp/g1-server-$port.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 1
status=0
"$bin" bots --server "127.0.0.1:$port" --count "$bots" --duration-s 30 --json || status=$?
wait "$server" || true
trap - EXIT
cat "/tmp/g1-server-$port.json"
exit "$status"
