//! Feeds arbitrary bytes to the HTTP/1.1 server state machine, fragmented as the first input
//! byte says, answering every request and draining output, then firing the timers.
//! Properties checked: no panic, buffered input stays bounded while the codec wants to read,
//! and after the codec says `should_close` it never emits another request.

#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sinew_protocols::http1::{Body, Response, ServerConfig, ServerConnection};
use sinew_protocols::protocol::ServerEvent;

#[path = "shared/http1_limits.rs"]
mod http1_limits;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else { return };
    let step = usize::from(ctl & 0x3f) + 1;
    let limits = http1_limits::for_control(ctl);
    let now = Instant::now();
    let mut conn = ServerConnection::new(ServerConfig { limits, ..ServerConfig::default() }, now);
    let mut buf = BytesMut::new();
    let mut pending = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(ev) = conn.poll_event(&mut buf, now) {
            match ev {
                ServerEvent::Request { id, request } => {
                    assert!(!conn.should_close() || conn.has_output());
                    if request.expect_continue {
                        conn.read_body(id);
                    }
                    pending.push(id);
                }
                ServerEvent::BodyChunk { data, .. } => assert!(!data.is_empty()),
                ServerEvent::BodyEnd { .. } | ServerEvent::Error { .. } => {}
            }
        }
        // Answer in reverse order to exercise the ordered output queue.
        while let Some(id) = pending.pop() {
            let body = Body::Full(Bytes::from_static(b"ok"));
            let _ = conn.send_response(id, Response::new(200).with_body(body));
        }
        while conn.poll_transmit(now).is_some() {}
        if conn.wants_read() {
            assert!(buf.len() <= 1024 + 64 + step, "input buffer grew past the limits");
        }
        if conn.should_close() {
            return;
        }
    }
    // Either the peer hangs up or the timers fire; both must leave a closable connection.
    if ctl & 1 == 0 {
        let _ = conn.on_eof();
    } else {
        let _ = conn.on_timeout(now + Duration::from_secs(3600));
    }
    while let Some(id) = pending.pop() {
        let _ = conn.send_response(id, Response::new(204));
    }
    while conn.poll_transmit(now).is_some() {}
});
