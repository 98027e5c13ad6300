//! # sinew-protocols
//!
//! Sans-I/O protocol codecs and connection state machines (bytes in, events out, bytes to
//! send out, timers as data). Nothing here touches a socket, a clock or a thread: the I/O
//! actors in `sinew-io-actors` drive these codecs over whatever transport they own, and tests
//! and fuzzers drive them with plain byte slices.
//!
//! - [`protocol`]: the traits every protocol implements (`Protocol`, `ServerProtocol`,
//!   `ClientProtocol`, and the per-connection `ServerCodec` / `ClientCodec`).
//! - [`http1`]: HTTP/1.1 server and client.
//! - [`resp`]: Redis RESP2/RESP3 server and client (pipelining, `HELLO`, pub/sub pushes).
//!
//! Later protocols (HTTP/2, gRPC, PostgreSQL, Kafka, WebSocket) arrive with their issues.
//!
//! ## Example: one pipelined exchange on the server side
//!
//! ```
//! use std::time::Instant;
//! use bytes::{Bytes, BytesMut};
//! use sinew_protocols::http1::{Body, Response, ServerConfig, ServerConnection};
//! use sinew_protocols::protocol::ServerEvent;
//!
//! let now = Instant::now();
//! let mut conn = ServerConnection::new(ServerConfig::default(), now);
//! // Two pipelined requests arrive in one read.
//! let mut buf = BytesMut::from(
//!     &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"[..],
//! );
//! let mut ids = Vec::new();
//! while let Some(event) = conn.poll_event(&mut buf, now) {
//!     if let ServerEvent::Request { id, request } = event {
//!         ids.push((id, request.target_bytes()));
//!     }
//! }
//! assert_eq!(ids.len(), 2);
//! // Answer out of order: the codec still sends /a's response first.
//! for (id, target) in ids.into_iter().rev() {
//!     conn.send_response(id, Response::new(200).with_body(Body::Full(target))).unwrap();
//! }
//! let mut wire = Vec::new();
//! while let Some(bytes) = conn.poll_transmit(now) {
//!     wire.extend_from_slice(&bytes);
//! }
//! let wire = String::from_utf8(wire).unwrap();
//! assert!(wire.find("\r\n\r\n/a").unwrap() < wire.find("\r\n\r\n/b").unwrap());
//! assert!(!conn.should_close());
//! # let _ = Bytes::new();
//! ```

pub mod http1;
pub mod protocol;
pub mod resp;

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "protocols";
