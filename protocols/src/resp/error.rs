//! Typed RESP errors, each knowing whether it ends the connection.
//!
//! Malformed input is fatal, as in redis-server: once a length or a terminator is wrong, the
//! rest of the stream can no longer be framed, so the server answers with a protocol error
//! reply (redis's own wording where it has one) and closes after flushing it, and the client
//! fails every outstanding request and closes. Misuse of the codec API (answering an unknown
//! request, streaming a body) touches no wire and is not fatal.

use thiserror::Error;

use super::value::Value;

/// Everything that can go wrong while decoding or encoding RESP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RespError {
    /// A `*<n>` header that is not a number or exceeds `RespLimits::max_array_len`.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$<len>` header that is not a number, is negative where a null is not allowed, or
    /// exceeds `RespLimits::max_bulk_len`.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// A command array element that is not a bulk string.
    #[error("expected '$', got '{}'", char::from(*got))]
    ExpectedBulk {
        /// The type byte found instead.
        got: u8,
    },
    /// Bulk string data not followed by CRLF.
    #[error("bulk string not terminated by CRLF")]
    BadTerminator,
    /// An inline command longer than `RespLimits::max_inline_len`.
    #[error("too big inline request")]
    InlineTooLong,
    /// An inline command with a quote that is not closed (or closed and directly followed by
    /// something other than a space).
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A reply type byte that RESP2/RESP3 does not define.
    #[error("invalid reply type byte 0x{byte:02x}")]
    InvalidType {
        /// The byte.
        byte: u8,
    },
    /// A reply nested deeper than `RespLimits::max_depth`.
    #[error("reply nested deeper than {limit} levels")]
    TooDeep {
        /// The configured (clamped) limit.
        limit: usize,
    },
    /// A reply line (simple string, error, number) longer than allowed.
    #[error("reply line longer than {limit} bytes")]
    LineTooLong {
        /// The limit that applied.
        limit: usize,
    },
    /// A reply that is framed correctly but does not follow the grammar (a bad integer, an
    /// odd map, a streamed aggregate, ...).
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A reply arrived although no request was outstanding.
    #[error("reply for unknown request")]
    UnsolicitedReply,
    /// The peer closed the connection in the middle of a reply.
    #[error("connection closed in the middle of a reply")]
    UnexpectedEof,
    /// The connection closed (or failed) before this request was answered.
    #[error("connection closed")]
    ConnectionClosed,
    /// No reply arrived within the response timeout.
    #[error("response timeout")]
    ResponseTimeout,
    /// `send_response` for a request that is unknown or already answered.
    #[error("unknown or already answered request")]
    UnknownRequest,
    /// A streamed-body call: RESP has no streamed bodies.
    #[error("RESP has no streamed bodies")]
    StreamingNotSupported,
}

impl RespError {
    /// Whether the connection must be closed after this error.
    ///
    /// Every decode error does (after the server flushed its error reply): the stream can
    /// no longer be framed. API misuse ([`RespError::UnknownRequest`],
    /// [`RespError::StreamingNotSupported`]) does not.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            RespError::UnknownRequest | RespError::StreamingNotSupported
        )
    }

    /// Same as [`RespError::closes_connection`].
    pub fn is_fatal(&self) -> bool {
        self.closes_connection()
    }

    /// Whether this is malformed input (what redis calls a protocol error), as opposed to a
    /// connection failure, a timeout or API misuse.
    pub fn is_protocol_error(&self) -> bool {
        use RespError::*;
        matches!(
            self,
            InvalidMultibulkLength
                | InvalidBulkLength
                | ExpectedBulk { .. }
                | BadTerminator
                | InlineTooLong
                | UnbalancedQuotes
                | InvalidType { .. }
                | TooDeep { .. }
                | LineTooLong { .. }
                | Malformed(_)
                | UnsolicitedReply
        )
    }
}

/// The error reply a server sends for `error`: `-ERR Protocol error: <what>` for malformed
/// input (redis's wording, e.g. `ERR Protocol error: invalid bulk length`), `-ERR <what>`
/// otherwise.
pub fn error_reply(error: &RespError) -> Value {
    let text = if error.is_protocol_error() {
        format!("ERR Protocol error: {error}")
    } else {
        format!("ERR {error}")
    };
    Value::Error(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_use_redis_wording() {
        let text = |e: RespError| match error_reply(&e) {
            Value::Error(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(RespError::InvalidBulkLength),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            text(RespError::InvalidMultibulkLength),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            text(RespError::ExpectedBulk { got: b'x' }),
            "ERR Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            text(RespError::InlineTooLong),
            "ERR Protocol error: too big inline request"
        );
        assert_eq!(
            text(RespError::UnbalancedQuotes),
            "ERR Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            text(RespError::UnknownRequest),
            "ERR unknown or already answered request"
        );
        assert!(RespError::InvalidBulkLength.closes_connection());
        assert!(RespError::ResponseTimeout.is_fatal());
        assert!(!RespError::UnknownRequest.closes_connection());
        assert!(!RespError::ConnectionClosed.is_protocol_error());
    }
}
