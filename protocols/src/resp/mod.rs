//! Redis RESP2/RESP3, sans-I/O.
//!
//! - [`RespServerCodec`]: commands in (multibulk arrays of bulk strings, or inline commands
//!   with redis's quoting rules), decoded zero-copy by a hand-written iterative scanner that
//!   enforces the [limits](RespLimits) as it goes; replies out in request order whatever the
//!   order of the answers; pushes (pub/sub messages) in between; `HELLO` switching the
//!   reply encoding to RESP3; protocol errors answered in redis's wording
//!   (`-ERR Protocol error: invalid bulk length`) followed by a close.
//! - [`RespClientCodec`]: commands out, replies in (any RESP2 or RESP3 reply, bounded by
//!   an iterative scan before it is built, zero-copy, without recursion), a FIFO for
//!   pipelining, `HELLO 3` negotiation, RESP3 pushes and RESP2 pub/sub messages as
//!   [`ClientEvent::Push`](crate::protocol::ClientEvent::Push).
//! - [`Value`] and [`Command`]: what goes over the wire; [`encode_value`],
//!   [`encode_command`] and [`decode_value`] for use outside the codecs.
//! - [`Resp`]: the [`Protocol`] description that makes both codecs.
//!
//! Nothing a peer sends can make a codec reserve memory beyond the limits (every length is
//! checked before anything waits for the data it announces), recurse, or panic; decoded
//! values nest at most [`RespLimits::HARD_MAX_DEPTH`] deep.
//!
//! ## Example: a pipelined exchange on the server side
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use sinew_protocols::protocol::ServerEvent;
//! use sinew_protocols::resp::{Resp, RespServerCodec, Value};
//!
//! let now = Instant::now();
//! let mut conn = RespServerCodec::new(Resp::default(), now);
//! // A multibulk SET and an inline GET arrive in one read.
//! let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nGET k\r\n"[..]);
//! let mut requests = Vec::new();
//! while let Some(event) = conn.poll_event(&mut buf, now) {
//!     if let ServerEvent::Request { id, request } = event {
//!         requests.push((id, request));
//!     }
//! }
//! assert!(requests[0].1.is("set") && requests[1].1.is("GET"));
//! assert_eq!(&requests[0].1.args()[2][..], b"v1"); // a slice of `buf`'s memory
//! // Answer out of order: the codec still sends SET's reply first.
//! let (get, set) = (requests[1].0, requests[0].0);
//! conn.send_response(get, Value::bulk("v1")).unwrap();
//! conn.send_response(set, Value::ok()).unwrap();
//! let wire = conn.poll_transmit(now).unwrap();
//! assert_eq!(&wire[..], b"+OK\r\n$2\r\nv1\r\n");
//! assert!(!conn.should_close());
//! ```

mod client;
mod command;
mod encode;
mod error;
mod limits;
mod reply;
mod server;
mod value;

#[cfg(test)]
mod tests;

use std::time::Instant;

pub use client::{RespClientCodec, RespClientEvent};
pub use encode::{encode_command, encode_value};
pub use error::{error_reply, RespError};
pub use limits::RespLimits;
pub use reply::decode_value;
pub use server::{RespServerCodec, RespServerEvent};
pub use value::{Command, Value};

use crate::protocol::{
    ClientProtocol, Multiplexing, Protocol, ProtocolInfo, ProtocolTimeouts, ServerProtocol,
    WireFormat,
};

/// A RESP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RespVersion {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3 (Redis 6+, negotiated with `HELLO 3`).
    Resp3,
}

/// RESP as a [`Protocol`]: configuration shared by every connection of a listener or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resp {
    /// Size limits (both sides).
    pub limits: RespLimits,
    /// Client side: the version to negotiate. With [`RespVersion::Resp3`] the client codec
    /// sends `HELLO 3` first (see [`RespClientCodec`]). Servers start every connection in
    /// RESP2 and follow the client's `HELLO`.
    pub version: RespVersion,
    /// Timeouts: `idle` closes an idle connection (both sides; none by default, like
    /// redis's `timeout 0`), `response` bounds the wait for a reply (client; none by
    /// default). `request_read` is not used.
    pub timeouts: ProtocolTimeouts,
}

impl Protocol for Resp {
    type Request = Command;
    type Response = Value;
    type Trailers = ();
    type Error = RespError;

    fn info(&self) -> ProtocolInfo {
        ProtocolInfo {
            name: "RESP",
            default_port: 6379,
            wire_format: WireFormat::Text,
            streaming: false,
            tls_required: false,
            multiplexing: Multiplexing::Pipelined,
        }
    }

    fn max_message_size(&self) -> u64 {
        self.limits.max_bulk_len as u64
    }

    fn timeouts(&self) -> ProtocolTimeouts {
        self.timeouts
    }
}

impl ServerProtocol for Resp {
    type Codec = RespServerCodec;

    fn new_codec(&self, now: Instant) -> RespServerCodec {
        RespServerCodec::new(*self, now)
    }

    /// `-ERR Protocol error: <what>` in redis's wording (see [`error_reply`]).
    fn error_response(&self, error: &RespError) -> Option<Value> {
        Some(error_reply(error))
    }

    fn unavailable_response(&self) -> Value {
        Value::error("ERR server unavailable")
    }

    fn health_check_response(&self) -> Value {
        Value::simple("PONG")
    }

    /// Commands about the connection itself: pub/sub (`SUBSCRIBE`, `PSUBSCRIBE`,
    /// `SSUBSCRIBE` and their `UNSUBSCRIBE`s: deliveries need a way back) and connection
    /// state (`HELLO`, `CLIENT`: the handle names the connection).
    fn needs_push(&self, request: &Command) -> bool {
        // Cheap reject on the hot path: every such name is 5 to 12 bytes long.
        let n = request.name().len();
        (5..=12).contains(&n)
            && [
                "subscribe",
                "psubscribe",
                "ssubscribe",
                "unsubscribe",
                "punsubscribe",
                "sunsubscribe",
                "hello",
                "client",
            ]
            .iter()
            .any(|c| request.is(c))
    }
}

impl ClientProtocol for Resp {
    type Codec = RespClientCodec;

    fn new_codec(&self, now: Instant) -> RespClientCodec {
        RespClientCodec::new(*self, now)
    }

    fn health_check_request(&self) -> Option<Command> {
        Some(Command::new("PING"))
    }
}
