//! HTTP/1.1 (RFC 9110, RFC 9112), sans-I/O.
//!
//! - [`ServerConnection`]: requests in (keep-alive, pipelining, Content-Length and chunked
//!   bodies, `Expect: 100-continue`, streaming above a threshold), responses out in request
//!   order, limits with the right status, smuggling defences, header-read and idle timers,
//!   graceful shutdown.
//! - [`ClientConnection`]: requests out, responses in (Content-Length, chunked,
//!   close-delimited, HEAD, 1xx skipped, 204/304), keep-alive reuse, a FIFO for pipelining.
//! - [`Http1`]: the [`Protocol`] description that makes both.

mod body;
mod client;
mod date;
mod encode;
mod error;
mod field;
mod limits;
mod message;
mod parse;
mod quick;
mod router;
mod server;

#[cfg(test)]
mod tests;

use std::time::Instant;

pub use client::{ClientConfig, ClientConnection, ClientEventOf};
pub use date::{DateCache, DATE_LEN};
pub use error::Http1Error;
pub use limits::{Limits, LineEndingPolicy, Timeouts};
pub use message::{reason_phrase, Body, FieldBlock, Headers, Method, Request, Response, Version};
pub use router::{Match, Params, RouteError, RouteMiss, Router, MAX_PARAMS};
pub use server::{error_response, Event, ServerConfig, ServerConnection};

use crate::protocol::{
    ClientProtocol, Multiplexing, Protocol, ProtocolInfo, ProtocolTimeouts, ServerProtocol,
    WireFormat,
};

/// HTTP/1.1 as a [`Protocol`]: configuration shared by every connection of a listener or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Http1 {
    /// Server-side configuration.
    pub server: ServerConfig,
    /// Client-side configuration.
    pub client: ClientConfig,
}

impl Protocol for Http1 {
    type Request = Request;
    type Response = Response;
    type Trailers = Headers;
    type Error = Http1Error;

    fn info(&self) -> ProtocolInfo {
        ProtocolInfo {
            name: "HTTP/1.1",
            default_port: 80,
            wire_format: WireFormat::Text,
            streaming: true,
            tls_required: false,
            multiplexing: Multiplexing::Pipelined,
        }
    }

    fn max_message_size(&self) -> u64 {
        self.server.limits.max_body_size
    }

    fn timeouts(&self) -> ProtocolTimeouts {
        ProtocolTimeouts {
            request_read: self.server.timeouts.header_read,
            idle: self.server.timeouts.idle,
            response: self.client.timeouts.response,
        }
    }
}

impl ServerProtocol for Http1 {
    type Codec = ServerConnection;

    fn new_codec(&self, now: Instant) -> ServerConnection {
        ServerConnection::new(self.server, now)
    }

    fn error_response(&self, error: &Http1Error) -> Option<Response> {
        Some(error_response(error))
    }

    fn unavailable_response(&self) -> Response {
        Response::new(503)
            .header("content-type", "text/plain; charset=utf-8")
            .with_body(Body::Full(bytes::Bytes::from_static(
                b"service unavailable\n",
            )))
    }

    /// `429 Too Many Requests` with `Retry-After` in whole seconds (rounded up).
    fn rate_limited_response(&self, retry_after: std::time::Duration) -> Response {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Response::new(429)
            .header("retry-after", secs.max(1).to_string())
            .header("content-type", "text/plain; charset=utf-8")
            .with_body(Body::Full(bytes::Bytes::from_static(
                b"too many requests\n",
            )))
    }

    /// Bodies over `body_stream_threshold` or chunked arrive in parts.
    fn streams_body(&self, request: &Request) -> bool {
        matches!(request.body, Body::Stream)
    }

    fn health_check_response(&self) -> Response {
        Response::new(200)
            .header("content-type", "text/plain; charset=utf-8")
            .with_body(Body::Full(bytes::Bytes::from_static(b"ok\n")))
    }
}

impl ClientProtocol for Http1 {
    type Codec = ClientConnection;

    fn new_codec(&self, now: Instant) -> ClientConnection {
        ClientConnection::new(self.client, now)
    }

    /// `GET /health` with a `Host` header (HTTP/1.1 servers reject requests without one and
    /// close the connection, which would turn every check into a reconnect).
    fn health_check_request(&self) -> Option<Request> {
        Some(Request::new(Method::Get, "/health").header("host", "localhost"))
    }
}
