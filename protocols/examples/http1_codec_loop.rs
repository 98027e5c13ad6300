//! The HTTP/1.1 server codec alone, on the pipelined plaintext path, for instruction counts:
//! `ROUNDS` times, 16 pipelined `GET /plaintext` requests are parsed from one buffer, each is
//! answered with the benchmark's response (a shared field block and a static body, as
//! `examples/http_hello.rs` answers), and the output is drained. No actors, no sockets, no
//! clock reads in the loop, so a callgrind count of it is the codec's own cost per request
//! (`CODEC=1 scripts/instructions-per-request.sh` runs it). The criterion bench
//! `http1_codec` times the same loop.
//!
//! Usage: `cargo run --release -p sinew-protocols --example http1_codec_loop [ROUNDS]`

use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use sinew_protocols::http1::{Body, FieldBlock, Response, ServerConfig, ServerConnection};
use sinew_protocols::protocol::ServerEvent;

const PIPELINE: usize = 16;
const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const BODY: &[u8] = b"Hello, World!";

fn main() -> ExitCode {
    let rounds: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 20_000,
        Some(Ok(0)) => {
            eprintln!("ROUNDS must be at least 1");
            return ExitCode::FAILURE;
        }
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("ROUNDS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fields = match FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")]) {
        Ok(block) => block.into_static(),
        Err(e) => {
            eprintln!("field block: {e}");
            return ExitCode::FAILURE;
        }
    };
    let input = REQUEST.repeat(PIPELINE);
    let now = Instant::now();
    let mut conn = ServerConnection::new(ServerConfig::default(), now);
    conn.set_date(SystemTime::now());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut answered, mut sent) = (0usize, 0usize);
    for _ in 0..rounds {
        buf.extend_from_slice(&input);
        while let Some(event) = conn.poll_event(&mut buf, now) {
            let ServerEvent::Request { id, request } = event else {
                eprintln!("unexpected event: {event:?}");
                return ExitCode::FAILURE;
            };
            drop(request);
            let answer = Response::new(200)
                .with_fields(&fields)
                .with_body(Body::Full(Bytes::from_static(BODY)));
            if let Err(e) = conn.send_response(id, answer) {
                eprintln!("send_response: {e}");
                return ExitCode::FAILURE;
            }
            answered += 1;
        }
        while let Some(out) = conn.poll_transmit(now) {
            sent += out.len();
        }
    }
    // Every request answered, each answer carrying the body: the loop did the whole work.
    let bodies = sent.checked_div(answered).unwrap_or(0);
    if answered != rounds * PIPELINE || bodies <= BODY.len() {
        eprintln!(
            "answered {answered} of {} requests, {sent} bytes",
            rounds * PIPELINE
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
