#!/usr/bin/env bash
# Server CPU time per HTTP request, split into user and kernel time: `/proc/PID/stat` of a
# server started by `sinew-bench __http-serve` (pinned to core 0) around one `wrk` run (pinned
# to core 1, one thread, 32 connections). Kernel time is most of the cost unpipelined, user
# time is where servers differ pipelined, and throughput alone hides both (wrk's core is the
# limit on two cores). Alternate systems run after run: this machine's load moves by tens of
# percent between runs.
# Usage: scripts/cpu-per-request.sh SYSTEM [pipelined|plain] [SECONDS]
#   SYSTEM: sinew-uring | sinew-mio | hyper | actix-web | may-minihttp | canned
# Needs wrk, curl, taskset and python3; builds sinew-bench with the release profile first.
set -euo pipefail
cd "$(dirname "$0")/.."
SYSTEM="${1:?usage: $0 SYSTEM [pipelined|plain] [SECONDS]}"
MODE="${2:-pipelined}"; SECS="${3:-5}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p sinew-bench >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "$TARGET/release/sinew-bench" __http-serve --system "$SYSTEM" --addr "127.0.0.1:$PORT" \
  >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
ready=0
for _ in $(seq 300); do
  if curl -sf "http://127.0.0.1:$PORT/plaintext" >/dev/null; then ready=1; break; fi
  kill -0 "$SERVER" 2>/dev/null || { echo "server exited" >&2; exit 1; }
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "server did not answer" >&2; exit 1; }
# 16 requests per write: sinew-bench's own pipelining script.
LUA=benches/src/http/pipeline.lua
cpu() { awk '{print $14, $15}' "/proc/$SERVER/stat"; }
read -r u0 s0 < <(cpu)
if [ "$MODE" = pipelined ]; then
  OUT=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$PORT/plaintext")
else
  OUT=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$PORT/plaintext")
fi
read -r u1 s1 < <(cpu)
N=$(awk '/requests in/{print $1}' <<<"$OUT")
TICK=$(getconf CLK_TCK)
python3 - "$SYSTEM" "$MODE" "$N" "$TICK" "$u0" "$s0" "$u1" "$s1" <<'PY'
import sys
name, mode = sys.argv[1:3]
n, tick, u0, s0, u1, s1 = map(int, sys.argv[3:])
user, kern = (u1 - u0) / tick * 1e9 / n, (s1 - s0) / tick * 1e9 / n
print(f"{name} {mode}: {n} requests, user {user:.0f} ns, kernel {kern:.0f} ns per request, "
      f"{1e3 / (user + kern):.2f}M requests per CPU-second")
PY
