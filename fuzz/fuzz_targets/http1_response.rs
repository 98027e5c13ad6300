//! Feeds arbitrary bytes, fragmented as the first input byte says, to the HTTP/1.1 client
//! state machine with one to four pipelined requests outstanding (GET or HEAD, as the second
//! byte says), then ends the stream with EOF or a response timeout.
//! Properties checked:
//! - no panic;
//! - answers come in request order, each request gets one response head or one error, and a
//!   streamed body's chunks (never empty) arrive between its head and its end or error;
//! - buffered input stays within the limits while the connection reads;
//! - after EOF or the timeout every request has ended and the connection says it should close.

#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sinew_protocols::http1::{
    Body, ClientConfig, ClientConnection, ClientEventOf, Method, Request, Timeouts,
};
use sinew_protocols::protocol::{ClientEvent, RequestId};

/// Where one request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Streaming,
    Done,
}

struct Tracker {
    ids: Vec<RequestId>,
    states: Vec<State>,
}

impl Tracker {
    fn index(&self, id: RequestId) -> usize {
        self.ids
            .iter()
            .position(|&i| i == id)
            .unwrap_or_else(|| panic!("event for unknown request {id:?}"))
    }

    /// Answers start in request order: every request before `i` has at least its head.
    fn check_order(&self, i: usize) {
        assert!(
            self.states[..i].iter().all(|&s| s != State::Waiting),
            "answer for request {i} before an earlier one's: {:?}",
            self.states
        );
    }

    fn on(&mut self, event: ClientEventOf) {
        match event {
            ClientEvent::Response { id, response } => {
                let i = self.index(id);
                assert_eq!(self.states[i], State::Waiting, "second head for {id:?}");
                self.check_order(i);
                self.states[i] = match response.body {
                    Body::Full(_) => State::Done,
                    Body::Stream => State::Streaming,
                };
            }
            ClientEvent::BodyChunk { id, data } => {
                let i = self.index(id);
                assert_eq!(self.states[i], State::Streaming, "chunk outside a body");
                assert!(!data.is_empty(), "empty body chunk");
            }
            ClientEvent::BodyEnd { id, .. } => {
                let i = self.index(id);
                assert_eq!(self.states[i], State::Streaming, "body end outside a body");
                self.states[i] = State::Done;
            }
            ClientEvent::Error { id: Some(id), .. } => {
                let i = self.index(id);
                assert_ne!(self.states[i], State::Done, "error after {id:?} ended");
                if self.states[i] == State::Waiting {
                    self.check_order(i);
                }
                self.states[i] = State::Done;
            }
            // A connection-level failure (bytes with no request to answer): the requests
            // still outstanding get their own errors.
            ClientEvent::Error { id: None, .. } => {}
            ClientEvent::Push { .. } => panic!("HTTP/1.1 has no pushes"),
        }
    }
}

#[path = "shared/http1_limits.rs"]
mod http1_limits;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((&kinds, input)) = rest.split_first() else {
        return;
    };
    let step = usize::from(ctl & 0x3f) + 1;
    let limits = http1_limits::for_control(ctl);
    let timeouts = Timeouts {
        response: Some(Duration::from_secs(30)),
        ..Timeouts::default()
    };
    let now = Instant::now();
    let mut conn = ClientConnection::new(ClientConfig { limits, timeouts }, now);
    let mut tracker = Tracker {
        ids: Vec::new(),
        states: Vec::new(),
    };
    for n in 0..=(kinds & 3) {
        let method = if kinds & (0x10 << n) != 0 {
            Method::Head
        } else {
            Method::Get
        };
        let mut request = Request::new(method, "/");
        request.headers_mut().append("host", "fuzz");
        let id = conn
            .send_request(request)
            .expect("a fresh connection takes requests");
        tracker.ids.push(id);
        tracker.states.push(State::Waiting);
    }
    while conn.poll_transmit(now).is_some() {}
    let mut buf = BytesMut::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(event) = conn.poll_event(&mut buf, now) {
            tracker.on(event);
        }
        // Failed or closed: a caller stops reading (what is left in `buf` is not consumed).
        if conn.should_close() {
            break;
        }
        // A head past its limit fails; a whole body is at most the threshold; a streamed one
        // is consumed as it arrives.
        assert!(
            buf.len() <= 1024 + 512 + 64 + step,
            "input buffer grew past the limits: {}",
            buf.len()
        );
    }
    if ctl & 1 == 0 {
        conn.on_eof();
    } else {
        let _ = conn.on_timeout(now + Duration::from_secs(3600));
    }
    while let Some(event) = conn.poll_event(&mut buf, now) {
        tracker.on(event);
    }
    assert!(
        tracker.states.iter().all(|&s| s == State::Done),
        "a request never ended: {:?}",
        tracker.states
    );
    assert_eq!(conn.in_flight(), 0);
    assert!(
        conn.should_close(),
        "nothing more can be read, yet it should not close"
    );
});
