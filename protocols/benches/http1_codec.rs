//! Criterion micro-benchmarks of the HTTP/1.1 server codec on the pipelined plaintext path
//! (what wrk sends in the TechEmpower-style benchmark): 16 requests per read, each answered
//! with a small static response, everything drained. Reported per request.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sinew_protocols::http1::{Body, Response, ServerConfig, ServerConnection};
use sinew_protocols::protocol::ServerEvent;

const PIPELINE: usize = 16;
const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn burst() -> Vec<u8> {
    REQUEST.repeat(PIPELINE)
}

fn response() -> Response {
    Response::new(200)
        .header("server", "sinew")
        .header("content-type", "text/plain")
        .with_body(Body::Full(Bytes::from_static(b"Hello, World!")))
}

/// Parse, build the answer, encode it, drain the output: the codec's whole per-request cost.
fn round_trip(c: &mut Criterion) {
    // Every byte of these is copied through actor mailboxes; worth seeing next to the timings.
    eprintln!(
        "size_of Request = {}, Response = {}",
        std::mem::size_of::<sinew_protocols::http1::Request>(),
        std::mem::size_of::<Response>()
    );
    let input = burst();
    let now = Instant::now();
    let mut conn = ServerConnection::new(ServerConfig::default(), now);
    conn.set_date(SystemTime::now());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut g = c.benchmark_group("http1_server");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("pipelined_16_round_trip", |b| {
        b.iter(|| {
            buf.reserve(input.len());
            buf.extend_from_slice(&input);
            while let Some(ev) = conn.poll_event(&mut buf, now) {
                match ev {
                    ServerEvent::Request { id, request } => {
                        black_box(&request);
                        drop(request);
                        conn.send_response(id, response()).expect("send");
                    }
                    _ => panic!("unexpected event"),
                }
            }
            let mut sent = 0;
            while let Some(out) = conn.poll_transmit(now) {
                sent += out.len();
            }
            black_box(sent)
        })
    });
    g.finish();
}

/// Parsing only: the requests are dropped unanswered, so the codec's slots are reset by a new
/// connection every burst (cheap next to 16 requests: no allocation until the first request).
fn parse_only(c: &mut Criterion) {
    let input = burst();
    let now = Instant::now();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut g = c.benchmark_group("http1_server");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("pipelined_16_parse_only", |b| {
        b.iter(|| {
            let mut conn = ServerConnection::new(ServerConfig::default(), now);
            buf.reserve(input.len());
            buf.extend_from_slice(&input);
            let mut n = 0;
            while let Some(ev) = conn.poll_event(&mut buf, now) {
                black_box(&ev);
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, round_trip, parse_only);
criterion_main!(benches);
