//! Hybrid I/O: an HTTP/1.1 reverse proxy, inbound connections paired with outbound ones.
//!
//! A [`Proxy`] is an application handler for [`crate::serve`]: each incoming request is
//! forwarded to the upstream over one of a small fixed set of [`ClientConn`] connections
//! (round-robin; HTTP/1.1 pipelines many requests over each), and the upstream's response goes
//! back through the request's own `ReplyTo`. The reply address is the correlation at both
//! hops: the inbound connection actor waits on the `ReplyTo` it handed out, and the outbound
//! connection answers the proxy's `ReplyTo`, which carries the inbound one along.
//!
//! Failures map to gateway statuses: the upstream cannot be reached, drops the connection or
//! answers garbage → `502 Bad Gateway`; no answer within [`ProxyConfig::timeout`] → `504
//! Gateway Timeout`. A request with an idempotent method that failed with a connection or
//! protocol error (typically: the upstream closed a keep-alive connection, or announced
//! `Connection: close`, while requests were pipelined behind) is retried once, as the first
//! request of a fresh connection; timeouts are never retried. A connection that failed
//! is replaced by the next request that would use it, so a dead upstream costs one connect
//! attempt per request, not a reconnect loop.
//!
//! Hop-by-hop fields (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//! `Upgrade`, `Transfer-Encoding`) are not forwarded in either direction: each hop frames and
//! keeps alive its own connection.
//!
//! ```no_run
//! use sinew_actors::System;
//! use sinew_io_actors::{io_driver, serve, Proxy, ProxyConfig, ServerConfig};
//! use sinew_protocols::http1::Http1;
//! use sinew_transports::Backend;
//!
//! let system = System::builder().workers(2).try_driver(io_driver(Backend::Auto)).build()?;
//! let proxy = system.spawn(Proxy::new(ProxyConfig::new("127.0.0.1:8080".parse()?)))?;
//! let bound = serve(
//!     &system.handle(),
//!     Http1::default(),
//!     "127.0.0.1:8000".parse()?,
//!     0..system.workers(),
//!     Proxy::handler(&proxy),
//!     ServerConfig::default(),
//! )?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sinew_actors::{Actor, ActorId, Addr, Context, Recipient, ReplyError, ReplyTo, Terminated};
use sinew_protocols::http1::{Body, Headers, Http1, Method, Request, Response, Version};

use crate::client::{CallResult, ClientConn, ClientError, ClientMsg};
use crate::server::IncomingFor;

/// Reverse-proxy settings.
#[derive(Debug, Clone, Copy)]
pub struct ProxyConfig {
    /// Where requests go.
    pub upstream: SocketAddr,
    /// Upstream connections kept (requests are spread round-robin and pipelined over them).
    /// Zero is treated as one.
    pub connections: usize,
    /// Time allowed for the upstream's answer (from forwarding to the whole response); beyond
    /// it the client gets 504.
    pub timeout: Duration,
    /// The upstream side's HTTP/1.1 configuration (response limits and timeouts).
    pub protocol: Http1,
}

impl ProxyConfig {
    /// Defaults for `upstream`: 2 connections, a 30 s timeout, and responses up to the
    /// default body limit delivered whole (the proxy relays complete responses).
    pub fn new(upstream: SocketAddr) -> Self {
        let mut protocol = Http1::default();
        let limits = &mut protocol.client.limits;
        limits.body_stream_threshold = usize::try_from(limits.max_body_size).unwrap_or(usize::MAX);
        ProxyConfig {
            upstream,
            connections: 2,
            timeout: Duration::from_secs(30),
            protocol,
        }
    }
}

/// How forwarding a request failed, and the status the client gets for it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The upstream could not be reached, dropped the connection, or answered something that
    /// is not valid HTTP/1.1 (502).
    #[error("bad gateway: {0}")]
    BadGateway(ClientError),
    /// The upstream did not answer in time (504).
    #[error("gateway timeout")]
    Timeout,
    /// The upstream's response body was streamed (chunked, close-delimited, or over the
    /// whole-body threshold); relaying streamed bodies is not supported yet (502).
    #[error("upstream response body is streamed; relaying streams is not supported")]
    StreamedResponse,
    /// The request's body was streamed by the server codec; forwarding streamed bodies is not
    /// supported yet (413).
    #[error("request body is streamed; forwarding streams is not supported")]
    StreamedRequest,
}

impl ProxyError {
    /// The HTTP status the client receives.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadGateway(_) | ProxyError::StreamedResponse => 502,
            ProxyError::Timeout => 504,
            ProxyError::StreamedRequest => 413,
        }
    }

    /// The response the client receives.
    pub fn response(&self) -> Response {
        let body: &'static [u8] = match self.status() {
            504 => b"gateway timeout\n",
            413 => b"request body too large for the proxy\n",
            _ => b"bad gateway\n",
        };
        Response::new(self.status())
            .header("content-type", "text/plain; charset=utf-8")
            .with_body(Body::Full(Bytes::from_static(body)))
    }
}

/// What the proxy keeps while a request is at the upstream.
pub struct Forwarded {
    /// The inbound connection waiting for the answer.
    reply: ReplyTo<Response>,
    /// The connection slot the request went out on, and the connection's identity.
    slot: usize,
    conn: ActorId,
    /// A copy to send again if the connection was going away (idempotent methods, first try).
    retry: Option<Request>,
}

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarded")
            .field("slot", &self.slot)
            .field("retry", &self.retry.is_some())
            .finish_non_exhaustive()
    }
}

/// Messages of a [`Proxy`].
pub enum ProxyMsg {
    /// A request from an inbound connection (what [`Proxy::handler`] delivers).
    Request(IncomingFor<Http1>),
    /// The upstream's answer (or its failure) to a forwarded request.
    Upstream(Box<Forwarded>, Result<CallResult<Http1>, ReplyError>),
    /// Reports the proxy's counters.
    Stats(ReplyTo<ProxyStats>),
}

impl std::fmt::Debug for ProxyMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyMsg::Request(_) => f.write_str("Request"),
            ProxyMsg::Stats(_) => f.write_str("Stats"),
            ProxyMsg::Upstream(fw, r) => f
                .debug_tuple("Upstream")
                .field(fw)
                .field(&r.as_ref().map(|r| r.as_ref().map(|resp| resp.status)))
                .finish(),
        }
    }
}

/// Counters of a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received.
    pub requests: u64,
    /// Upstream responses relayed.
    pub relayed: u64,
    /// Requests answered 502.
    pub bad_gateway: u64,
    /// Requests answered 504.
    pub timeouts: u64,
    /// Requests sent again on a fresh connection.
    pub retries: u64,
    /// Upstream connections opened.
    pub connects: u64,
}

/// The reverse-proxy actor: see the module docs.
pub struct Proxy {
    config: ProxyConfig,
    conns: Vec<Option<Addr<ClientConn<Http1>>>>,
    next: usize,
    stats: ProxyStats,
    /// The upstream's address as a `Host` value, for requests that arrive without one.
    host: Bytes,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.config.upstream)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"transfer-encoding",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether `headers` carry hop-by-hop fields that must be removed. The encoders write their
/// own framing and `Connection` fields and skip the caller's, so a plain `Connection:
/// keep-alive` (which nginx sends on every response) needs no copy.
fn needs_strip(headers: &Headers) -> bool {
    headers.iter().any(|(n, v)| {
        is_hop_by_hop(n)
            && !(n.eq_ignore_ascii_case(b"connection") && v.eq_ignore_ascii_case(b"keep-alive"))
    })
}

/// A copy of `headers` without hop-by-hop fields (nor those named by `Connection`). Only
/// taken when [`needs_strip`] says so: it copies every field.
fn strip(headers: &Headers) -> Headers {
    let named: Vec<Vec<u8>> = headers
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Headers::new();
    for (n, v) in headers.iter() {
        let lower = n.to_ascii_lowercase();
        if !is_hop_by_hop(n) && !named.contains(&lower) {
            out.append(Bytes::copy_from_slice(n), Bytes::copy_from_slice(v));
        }
    }
    out
}

fn idempotent(m: &Method) -> bool {
    matches!(
        m,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

impl Proxy {
    /// A proxy to `config.upstream`. Connections open on first use.
    pub fn new(config: ProxyConfig) -> Self {
        let n = config.connections.max(1);
        Proxy {
            host: Bytes::from(config.upstream.to_string()),
            config,
            conns: (0..n).map(|_| None).collect(),
            next: 0,
            stats: ProxyStats::default(),
        }
    }

    /// The recipient to pass to [`crate::serve`] as the request handler.
    pub fn handler(proxy: &Addr<Proxy>) -> Recipient<IncomingFor<Http1>> {
        proxy.recipient_map(ProxyMsg::Request)
    }

    /// The proxy's counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    /// Prepares an inbound request for the upstream: HTTP/1.1, a `Host`, no hop-by-hop fields.
    fn outbound(&self, mut req: Request) -> Request {
        req.version = Version::Http11;
        req.expect_continue = false;
        if needs_strip(req.headers()) {
            let kept = strip(req.headers());
            req.set_headers(kept);
        }
        if !req.headers().contains("host") {
            req.headers_mut().append("host", self.host.clone());
        }
        req
    }

    /// The live connection of slot `retry_on` (a retry goes back to the slot whose connection
    /// failed, so it is the first request on a fresh connection) or of the next slot in turn,
    /// opening one if the slot is empty or its connection stopped.
    fn connection(
        &mut self,
        retry_on: Option<usize>,
        ctx: &mut Context<Self>,
    ) -> Option<(usize, Addr<ClientConn<Http1>>)> {
        let slot = match retry_on {
            Some(slot) => slot % self.conns.len(),
            None => {
                let slot = self.next % self.conns.len();
                self.next = self.next.wrapping_add(1);
                slot
            }
        };
        if let Some(c) = &self.conns[slot] {
            if c.is_alive() {
                return Some((slot, c.clone()));
            }
        }
        match ctx.spawn(ClientConn::new(self.config.protocol, self.config.upstream)) {
            Ok(c) => {
                self.stats.connects += 1;
                self.conns[slot] = Some(c.clone());
                Some((slot, c))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open an upstream connection");
                None
            }
        }
    }

    fn forward(
        &mut self,
        req: Request,
        reply: ReplyTo<Response>,
        retry_on: Option<usize>,
        ctx: &mut Context<Self>,
    ) {
        let first_try = retry_on.is_none();
        let Some((slot, conn)) = self.connection(retry_on, ctx) else {
            self.stats.bad_gateway += 1;
            let err = ProxyError::BadGateway(ClientError::Connection("proxy stopping".into()));
            reply.send(err.response());
            return;
        };
        let retry = (first_try && idempotent(&req.method)).then(|| req.clone());
        let fw = Box::new(Forwarded {
            reply,
            slot,
            conn: conn.id(),
            retry,
        });
        let upstream = ctx.reply_to_within(self.config.timeout, move |r| ProxyMsg::Upstream(fw, r));
        if let Err(e) = conn.try_send(ClientMsg::Call(req, upstream)) {
            // The connection's mailbox is closed or full: dropping the call answers
            // `upstream` with an error, which arrives here as a 502 (or a retry).
            tracing::debug!(error = %e, "upstream connection refused the call");
        }
    }

    fn answered(
        &mut self,
        fw: Forwarded,
        result: Result<CallResult<Http1>, ReplyError>,
        ctx: &mut Context<Self>,
    ) {
        let Forwarded {
            reply,
            slot,
            conn,
            retry,
        } = fw;
        let outcome = match result {
            Ok(Ok(resp)) if matches!(resp.body, Body::Stream) => Err(ProxyError::StreamedResponse),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(ClientError::Timeout)) | Err(ReplyError::Timeout) => Err(ProxyError::Timeout),
            Ok(Err(e)) => Err(ProxyError::BadGateway(e)),
            Err(e) => Err(ProxyError::BadGateway(ClientError::Connection(
                e.to_string(),
            ))),
        };
        match outcome {
            Ok(mut resp) => {
                if needs_strip(&resp.headers) {
                    resp.headers = strip(&resp.headers);
                }
                self.stats.relayed += 1;
                reply.send(resp);
            }
            Err(err) => {
                // The connection that failed this call is done: the next request through its
                // slot opens a new one.
                self.retire(slot, conn);
                // Connection errors, and protocol errors (which include a request the
                // connection's codec refused because the upstream had announced a close), may
                // succeed on a fresh connection; timeouts are not retried.
                let retryable = matches!(
                    &err,
                    ProxyError::BadGateway(ClientError::Connection(_) | ClientError::Protocol(_))
                );
                match retry {
                    Some(req) if retryable && reply.is_open() => {
                        self.stats.retries += 1;
                        tracing::debug!(error = %err, "retrying on a fresh upstream connection");
                        self.forward(req, reply, Some(slot), ctx);
                    }
                    _ => {
                        tracing::debug!(error = %err, status = err.status(), "upstream failed");
                        if err.status() == 504 {
                            self.stats.timeouts += 1;
                        } else {
                            self.stats.bad_gateway += 1;
                        }
                        reply.send(err.response());
                    }
                }
            }
        }
    }

    /// Stops and forgets slot `slot`'s connection if it is still `conn`.
    fn retire(&mut self, slot: usize, conn: ActorId) {
        if let Some(entry) = self.conns.get_mut(slot) {
            if entry.as_ref().is_some_and(|c| c.id() == conn) {
                if let Some(c) = entry.take() {
                    c.stop();
                }
            }
        }
    }
}

impl Actor for Proxy {
    type Msg = ProxyMsg;

    fn handle(&mut self, msg: ProxyMsg, ctx: &mut Context<Self>) {
        match msg {
            ProxyMsg::Request(inc) => {
                self.stats.requests += 1;
                if matches!(inc.request.body, Body::Stream) {
                    let err = ProxyError::StreamedRequest;
                    inc.reply.send(err.response());
                    return;
                }
                let req = self.outbound(inc.request);
                self.forward(req, inc.reply, None, ctx);
            }
            ProxyMsg::Upstream(fw, result) => self.answered(*fw, result, ctx),
            ProxyMsg::Stats(reply) => {
                reply.send(self.stats);
            }
        }
    }

    fn terminated(&mut self, ev: Terminated, _ctx: &mut Context<Self>) {
        // A connection that stopped (closed by the upstream, timed out, failed) leaves its
        // slot; the next request through it reconnects.
        for entry in &mut self.conns {
            if entry.as_ref().is_some_and(|c| c.id() == ev.id) {
                *entry = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(h: &Headers) -> Vec<String> {
        h.iter()
            .map(|(n, _)| String::from_utf8_lossy(n).to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_stripped() {
        let mut h = Headers::new();
        for (n, v) in [
            ("Host", "a"),
            ("Connection", "close, X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("X-Kept", "2"),
        ] {
            h.append(n, v);
        }
        assert!(needs_strip(&h));
        assert_eq!(names(&strip(&h)), vec!["host", "x-kept"]);

        // A plain `Connection: keep-alive` needs no copy: the encoder skips it anyway.
        let mut ka = Headers::new();
        ka.append("connection", "Keep-Alive");
        ka.append("server", "nginx");
        assert!(!needs_strip(&ka));
    }

    #[test]
    fn errors_map_to_gateway_statuses() {
        let bad = ProxyError::BadGateway(ClientError::Connection("refused".into()));
        assert_eq!(bad.status(), 502);
        assert_eq!(bad.response().status, 502);
        assert_eq!(ProxyError::Timeout.response().status, 504);
        assert_eq!(ProxyError::StreamedResponse.status(), 502);
        assert_eq!(ProxyError::StreamedRequest.status(), 413);
    }

    #[test]
    fn outbound_requests_are_http11_with_a_host() {
        let p = Proxy::new(ProxyConfig::new(([127, 0, 0, 1], 9).into()));
        let mut req = Request::new(Method::Get, "/x");
        req.version = Version::Http10;
        let out = p.outbound(req);
        assert_eq!(out.version, Version::Http11);
        assert_eq!(out.headers().get("host"), Some(&b"127.0.0.1:9"[..]));
        let kept = p.outbound(Request::new(Method::Get, "/").header("Host", "example.test"));
        assert_eq!(kept.headers().get_all("host").count(), 1);
        assert!(idempotent(&Method::Put) && !idempotent(&Method::Post));
    }
}
