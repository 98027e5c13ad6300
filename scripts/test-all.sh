#!/usr/bin/env bash
# Installs what the tests need (idempotently) and runs the whole test suite:
# formatting, lints, tests, loom models, docs, and a smoke run of the benchmark binary.
# .ci/run calls exactly this script; so can you, on a fresh Debian machine with rustup.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
# Where cargo puts build output (CARGO_TARGET_DIR when set, as cargo itself does).
TARGET="${CARGO_TARGET_DIR:-target}"

step "apt packages (.ci/apt-packages.txt)"
mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' .ci/apt-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "all present"
fi

step "rust components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (workspace)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

step "loom models of the lock-free protocols"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p sinew-actors --lib --release loom
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p sinew-transports --lib --release loom

step "miri on the unsafe code (inbound queue, cell access, workers, reply board, in-place request message)"
if cargo +nightly miri --version >/dev/null 2>&1 \
   || rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1; then
  export MIRIFLAGS="-Zmiri-disable-isolation"
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p sinew-actors --lib inbound
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p sinew-actors --lib reply_board
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p sinew-actors \
    --test backpressure --test replies --test lifecycle -- \
    overflow actor_side_deadline ask_gets_the_answer panic_stops_only try_send_many
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p sinew-io-actors --lib in_place
else
  echo "skipped: no nightly toolchain with miri on this machine (install: rustup component add --toolchain nightly miri)"
fi

step "fuzz the parsers briefly (cargo-fuzz; campaigns run longer outside CI)"
# cargo-fuzz needs a nightly toolchain (the miri step above installs one where it can). `-a` keeps
# debug assertions on: the HTTP/1.1 quick parser then checks every parse against httparse.
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || echo "could not install cargo-fuzz"
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  # The HTTP/1.1 targets get a dictionary of protocol tokens: without it a short run rarely
  # forms a whole head (the client target found its first bug only with it).
  for target in http1_request http1_response resp_decode; do
    dict=()
    case "$target" in http1_*) dict=(-dict=http1.dict) ;; esac
    (cd fuzz && cargo +nightly fuzz run -a "$target" -- -max_total_time=30 -rss_limit_mb=2048 \
      "${dict[@]}")
  done
else
  echo "skipped: cargo-fuzz on a nightly toolchain not available (cargo install cargo-fuzz)"
fi

step "cargo doc (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "examples run to completion"
cargo run --release --example quickstart -- 20000
cargo run --release --example supervision_tree
cargo run --release -p sinew-protocols --example http1_codec_loop -- 2000
cargo build --release --example http_hello
"$TARGET"/release/examples/http_hello --addr 127.0.0.1:18080 --io-workers 2 --run-for-secs 20 &
hello=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18080/plaintext >/dev/null && break; sleep 0.1; done
test "$(curl -sf http://127.0.0.1:18080/plaintext)" = "Hello, World!"
test "$(curl -sf http://127.0.0.1:18080/json)" = '{"message":"Hello, World!"}'
kill "$hello" 2>/dev/null || true
wait "$hello" 2>/dev/null || true

# API gateway over two backends; one dies: its circuit opens and it is reported unavailable.
cargo build --release --example api_gateway
"$TARGET"/release/examples/http_hello --addr 127.0.0.1:19001 --io-workers 1 --run-for-secs 60 & b1=$!
"$TARGET"/release/examples/http_hello --addr 127.0.0.1:19002 --io-workers 1 --run-for-secs 60 & b2=$!
"$TARGET"/release/examples/api_gateway --listen 127.0.0.1:18090 --path /plaintext \
  --backend http://127.0.0.1:19001 --backend http://127.0.0.1:19002 --run-for-secs 60 & gw=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/health >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do [ "$(curl -sf http://127.0.0.1:18090/aggregate | grep -o 'Hello, World!' | wc -l)" = 2 ] && break; sleep 0.1; done
test "$(curl -sf http://127.0.0.1:18090/aggregate | grep -o 'Hello, World!' | wc -l)" = 2
kill "$b2"; wait "$b2" 2>/dev/null || true
opened=no
for _ in $(seq 1 100); do
  if curl -sf http://127.0.0.1:18090/aggregate | grep -q 'circuit open'; then opened=yes; break; fi
  sleep 0.05
done
test "$opened" = yes
curl -sf http://127.0.0.1:18090/health | grep -q '"circuit":"open"'
kill "$gw" "$b1" 2>/dev/null || true
wait "$gw" "$b1" 2>/dev/null || true
echo "api_gateway: fan-out, circuit opening and health report checked"

step "sinew-bench smoke run (numbers are not checked: this machine is noisy)"
cargo run --release -p sinew-bench -- actors --quick --json > "$TARGET"/bench-smoke.json
python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert rows, "no rows"; print(len(rows), "rows")' "$TARGET"/bench-smoke.json
cargo run --release -p sinew-bench -- transports --quick --no-syscalls --json > "$TARGET"/bench-transports.json
python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert rows, "no rows"; print(len(rows), "rows")' "$TARGET"/bench-transports.json

step "all green"
