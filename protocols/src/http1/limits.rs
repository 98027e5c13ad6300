//! Limits and timeouts, as plain data.
//!
//! Every buffer the codec may grow is bounded by one of these numbers, so memory per connection
//! is bounded no matter what the peer sends. Timeouts are durations the state machine turns into
//! deadlines; the caller owns the clock and drives them (`next_timeout` / `on_timeout`).

use std::time::Duration;

/// What to do with a line terminated by a bare LF instead of CRLF.
///
/// RFC 9112 2.2 allows a recipient to accept bare LF, but accepting it where a front proxy does
/// not (or the reverse) is a request-smuggling vector, so the default is to reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEndingPolicy {
    /// Reject any bare LF with 400 and close.
    #[default]
    RequireCrlf,
    /// Accept a bare LF as a line terminator.
    AllowBareLf,
}

/// Size limits for one connection. All are enforced before the data is buffered further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes; longer gets 414.
    pub max_request_line: usize,
    /// Largest head (start line plus all header fields) in bytes; larger gets 431.
    pub max_head_size: usize,
    /// Most header fields in one head; more gets 431. Values above 128 are clamped.
    pub max_headers: usize,
    /// Largest body in bytes (Content-Length or sum of chunks); larger gets 413.
    pub max_body_size: u64,
    /// Bodies with a known length up to this many bytes are delivered whole with the
    /// request; longer or chunked bodies are streamed as chunk events.
    pub body_stream_threshold: usize,
    /// Longest chunk-size line (size plus chunk extensions), and largest trailer section.
    pub max_chunk_line: usize,
    /// Most requests parsed but not yet answered (pipelining depth); beyond it the connection
    /// stops reading (backpressure, not an error).
    pub max_pipelined: usize,
    /// Most response bytes buffered behind an unanswered earlier request, and most bytes
    /// waiting to be written before the connection stops reading.
    pub max_buffered_output: usize,
    /// Bare LF handling.
    pub line_endings: LineEndingPolicy,
}

impl Limits {
    /// Hard upper bound for `max_headers`: the parser keeps header slots on the stack.
    pub const HEADER_SLOTS: usize = 128;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_head_size: 64 * 1024,
            max_headers: 100,
            max_body_size: 16 * 1024 * 1024,
            body_stream_threshold: 64 * 1024,
            max_chunk_line: 4 * 1024,
            max_pipelined: 128,
            max_buffered_output: 4 * 1024 * 1024,
            line_endings: LineEndingPolicy::RequireCrlf,
        }
    }
}

/// Timeouts as data; `None` disables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed from the first byte of a head (or from connection start) to its end.
    /// Expiry answers 408 and closes: the slowloris defence.
    pub header_read: Option<Duration>,
    /// Time allowed between two pieces of request body data (like nginx's
    /// `client_body_timeout`). Expiry answers 408 and closes: the slow-body defence.
    pub body_read: Option<Duration>,
    /// Time an idle keep-alive connection (nothing in flight, nothing buffered) may stay open.
    pub idle: Option<Duration>,
    /// Client side: time allowed without progress while responses are outstanding.
    pub response: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Some(Duration::from_secs(10)),
            body_read: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(60)),
            response: Some(Duration::from_secs(30)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_bounded_and_strict() {
        let l = Limits::default();
        assert!(l.max_request_line <= l.max_head_size);
        assert!(l.max_headers <= Limits::HEADER_SLOTS);
        assert_eq!(l.line_endings, LineEndingPolicy::RequireCrlf);
        assert!(Timeouts::default().header_read.is_some());
    }
}
