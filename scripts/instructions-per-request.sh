#!/usr/bin/env bash
# Instructions per request for the whole server process (callgrind), a figure that does not move
# with the load on this shared machine, unlike wall time. Runs `examples/http_hello` (epoll
# backend: valgrind does not emulate io_uring) under callgrind with collection off until the
# server answers, then on for BATCHES x 4 connections x DEPTH requests, and divides. The idle
# spin is off (`SINEW_SPIN_US=0`) so that waiting is not counted as work; the kernel's share is
# not counted either. Usage: scripts/instructions-per-request.sh [BATCHES] [DEPTH]
# (defaults 300 16). Needs valgrind (callgrind_control too) and python3; builds the example with
# the release profile first. With CALLGRIND_KEEP=DIR the profile is kept there, for
# callgrind_annotate (`--inclusive=yes`, `--tree=caller`, `--auto=yes`). With SLOW_OPS=1 it also
# prints the instructions that cost far more cycles than their count says, executed per request
# and where: locked (atomic) ones, fences and integer divisions (needs objdump).
# HELLO_ARGS adds flags to the server's command line (`--inline`: answers on the
# connections' turns).
# With CODEC=1 it counts the HTTP/1.1 codec alone instead (`protocols/examples/
# http1_codec_loop.rs`: parse 16 pipelined requests, answer, drain, no actors or sockets); the
# first argument is then the number of 16-request rounds (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
OUT=$(mktemp -d)
SERVER=
trap '[ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true; rm -rf "$OUT"' EXIT
keep() { if [ -n "${CALLGRIND_KEEP:-}" ]; then mkdir -p "$CALLGRIND_KEEP"; cp "$OUT"/cg.out* "$CALLGRIND_KEEP"/; fi; }
total() { grep -E '^(summary|totals):' "$OUT"/cg.out* | head -1 | awk '{print $2}'; }
if [ -n "${CODEC:-}" ]; then
  ROUNDS="${1:-20000}"
  cargo build --release -p sinew-protocols --example http1_codec_loop >/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
    "$TARGET/release/examples/http1_codec_loop" "$ROUNDS" 2>"$OUT/valgrind.log"
  keep
  TOTAL=$(total)
  REQS=$((ROUNDS * 16))
  echo "codec alone: requests $REQS, instructions in the process $TOTAL, per request $((TOTAL / REQS))"
  exit 0
fi
BATCHES="${1:-300}"; DEPTH="${2:-16}"; CONNS=4
cargo build --release --example http_hello >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DUMP_INSTR=no; [ -n "${SLOW_OPS:-}" ] && DUMP_INSTR=yes
SINEW_SPIN_US=0 valgrind --tool=callgrind --instr-atstart=no --separate-threads=no \
  --dump-instr="$DUMP_INSTR" \
  --callgrind-out-file="$OUT/cg.out" "$TARGET/release/examples/http_hello" \
  --addr "127.0.0.1:$PORT" --io-workers 1 --transport mio --run-for-secs 600 ${HELLO_ARGS:-} \
  >/dev/null 2>"$OUT/valgrind.log" &
SERVER=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/plaintext" >/dev/null && break; sleep 0.2; done
callgrind_control -i on "$SERVER" >/dev/null
python3 - "$PORT" "$BATCHES" "$CONNS" "$DEPTH" <<'PY'
import socket, sys
port, batches, conns, depth = map(int, sys.argv[1:])
req = (b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port) * depth
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
for _ in range(batches):
    for s in socks:
        s.sendall(req)
    for s in socks:
        buf = b""
        while buf.count(b"HTTP/1.1 200") < depth:
            d = s.recv(65536)
            if not d:
                sys.exit("server closed the connection")
            buf += d
PY
# Dump the counts on request: an idle server under valgrind does not always act on SIGINT.
callgrind_control -d "$SERVER" >/dev/null
kill -KILL "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
keep
TOTAL=$(total)
REQS=$((BATCHES * CONNS * DEPTH))
echo "requests $REQS, instructions in the server process $TOTAL, per request $((TOTAL / REQS))"
[ -n "${SLOW_OPS:-}" ] || exit 0
# Executed count of each instruction (callgrind's per-address costs), matched against the
# binary's disassembly.
python3 - "$TARGET/release/examples/http_hello" "$REQS" "$OUT"/cg.out* <<'PY'
import collections, re, subprocess, sys
binary, reqs, profiles = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
costs = collections.Counter()
for path in profiles:
    addr, after_calls = 0, False
    for line in open(path):
        if not line or line[0] not in "+-*0123456789":
            after_calls = line.startswith("calls=")
            continue
        parts = line.split()
        tok = parts[0]
        if tok.startswith("+"):
            addr += int(tok[1:], 0)
        elif tok.startswith("-"):
            addr -= int(tok[1:], 0)
        elif tok != "*":
            addr = int(tok, 0)
        # The line after `calls=` is the call's inclusive cost, not this instruction's.
        if after_calls:
            after_calls = False
        elif len(parts) >= 3:
            costs[addr] += int(parts[2])
dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", binary],
                     capture_output=True, text=True, check=True).stdout
slow = re.compile(r"^(lock |mfence|(i?div)[bwlq]?\s|xchg\S*\s+\S+,\s*\S*\()")
fn, hits = "?", collections.Counter()
for line in dis.splitlines():
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        fn = m.group(1)
        continue
    m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
    if m and slow.match(m.group(2)) and costs.get(int(m.group(1), 16)):
        hits[(fn[:90], m.group(2)[:40])] += costs[int(m.group(1), 16)]
print("slow instructions per request (locked, fences, divisions), over 0.01:")
for (f, ins), n in hits.most_common():
    if n / reqs >= 0.01:
        print(f"  {n / reqs:6.2f}  {ins:<40} {f}")
PY
