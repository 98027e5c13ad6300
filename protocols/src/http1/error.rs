//! Typed HTTP/1.1 errors, each mapped to the status code the peer should see.
//!
//! The mapping lives next to the variants so that the server state machine never has to decide
//! ad hoc which status a failure deserves: `Http1Error::status` is the single source of truth.

use thiserror::Error;

/// Everything that can go wrong while decoding or encoding HTTP/1.1.
///
/// Decode errors on the server side become an error response with [`Http1Error::status`] and
/// a closed connection (framing can no longer be trusted). Client-side decode errors map to
/// `502 Bad Gateway`, which is what a proxy in front of the failing upstream would answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Http1Error {
    /// The request line is longer than `Limits::max_request_line`.
    #[error("request line longer than {limit} bytes")]
    RequestLineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The head (start line plus header fields) is larger than `Limits::max_head_size`.
    #[error("message head larger than {limit} bytes")]
    HeadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than `Limits::max_headers`.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The trailer section of a chunked body is too large or has too many fields.
    #[error("trailer section too large")]
    TrailersTooLarge,
    /// The body is larger than `Limits::max_body_size`.
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The start line or a header field does not follow the HTTP/1.1 grammar.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A line ended in a bare LF while the policy requires CRLF.
    #[error("bare LF line terminator")]
    BareLf,
    /// A header field was continued on the next line (obs-fold), rejected per RFC 9112 5.2.
    #[error("obsolete line folding in header field")]
    ObsFold,
    /// Both `Content-Length` and `Transfer-Encoding` are present (classic smuggling vector).
    #[error("both Content-Length and Transfer-Encoding present")]
    ContentLengthWithTransferEncoding,
    /// Several `Content-Length` values that disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// A `Content-Length` value that is not a decimal number that fits in 64 bits.
    #[error("invalid Content-Length value")]
    InvalidContentLength,
    /// A `Transfer-Encoding` this implementation does not decode (anything but `chunked`).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// A `Transfer-Encoding` that is present but cannot frame the message (empty, `chunked`
    /// twice, or sent in an HTTP/1.0 message).
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// A chunk-size line that is not hexadecimal, overflows, or is too long.
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not terminated by CRLF")]
    InvalidChunkTerminator,
    /// An HTTP/1.1 request without exactly one `Host` header field.
    #[error("missing or duplicate Host header")]
    InvalidHost,
    /// An `Expect` value other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// The head did not arrive within the header-read timeout (slowloris defence).
    #[error("header read timeout")]
    HeaderReadTimeout,
    /// No request body data arrived within the body-read timeout (slow-body defence).
    #[error("body read timeout")]
    BodyReadTimeout,
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed before the message was complete")]
    UnexpectedEof,
    /// A response arrived although no request was outstanding.
    #[error("unsolicited response")]
    UnsolicitedResponse,
    /// The connection was closed (by a framing error, `Connection: close`, shutdown or a
    /// timeout) before this request could be answered.
    #[error("connection closed")]
    ConnectionClosed,
    /// No response arrived within the response timeout.
    #[error("response timeout")]
    ResponseTimeout,
    /// An outgoing header name is not a token or a value contains CR, LF or NUL
    /// (response splitting defence).
    #[error("invalid outgoing header field")]
    InvalidHeader,
    /// An outgoing method, target or status code is not valid on the wire.
    #[error("invalid outgoing start line")]
    InvalidStartLine,
    /// The response or body call names a request that is unknown or already answered.
    #[error("unknown or already answered request")]
    UnknownRequest,
    /// A body was given for a message that cannot carry one (HEAD response aside: 1xx, 204, 304).
    #[error("status code does not allow a body")]
    BodyNotAllowed,
    /// A body call that does not match the message's body mode (for example a chunk for a
    /// message sent with a full body, or a second request while a streamed body is open).
    #[error("body call out of sequence")]
    BodyOutOfSequence,
    /// Responses waiting behind an unanswered earlier request exceed
    /// `Limits::max_buffered_output`.
    #[error("too much out-of-order response data buffered")]
    OutputBufferFull,
}

impl Http1Error {
    /// The HTTP status code this error maps to.
    ///
    /// Request-side decode errors map to 4xx/5xx per RFC 9110/9112 (414, 431, 413, 400, 501,
    /// 417, 408); errors decoding a response map to 502; misuse of the encoding API maps to 500.
    pub fn status(&self) -> u16 {
        use Http1Error::*;
        match self {
            RequestLineTooLong { .. } => 414,
            HeadTooLarge { .. } | TooManyHeaders { .. } | TrailersTooLarge => 431,
            BodyTooLarge { .. } => 413,
            Malformed(_)
            | BareLf
            | ObsFold
            | ContentLengthWithTransferEncoding
            | ConflictingContentLength
            | InvalidContentLength
            | InvalidTransferEncoding
            | InvalidChunkSize
            | InvalidChunkTerminator
            | InvalidHost
            | UnexpectedEof => 400,
            UnsupportedTransferEncoding => 501,
            ExpectationFailed => 417,
            HeaderReadTimeout | BodyReadTimeout => 408,
            UnsolicitedResponse | ConnectionClosed | ResponseTimeout => 502,
            InvalidHeader | InvalidStartLine | UnknownRequest | BodyNotAllowed
            | BodyOutOfSequence | OutputBufferFull => 500,
        }
    }

    /// Whether the connection must be closed after this error.
    ///
    /// Every decode error does: once framing is in doubt, the only safe continuation is none
    /// (a lenient parser is how request smuggling happens). API misuse errors do not, since the
    /// wire is untouched.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            Http1Error::InvalidHeader
                | Http1Error::InvalidStartLine
                | Http1Error::UnknownRequest
                | Http1Error::BodyNotAllowed
                | Http1Error::BodyOutOfSequence
                | Http1Error::OutputBufferFull
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_rfc_mapping() {
        assert_eq!(Http1Error::RequestLineTooLong { limit: 1 }.status(), 414);
        assert_eq!(Http1Error::TooManyHeaders { limit: 1 }.status(), 431);
        assert_eq!(Http1Error::HeadTooLarge { limit: 1 }.status(), 431);
        assert_eq!(Http1Error::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(Http1Error::Malformed("x").status(), 400);
        assert_eq!(Http1Error::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(Http1Error::HeaderReadTimeout.status(), 408);
        assert!(Http1Error::BareLf.closes_connection());
        assert!(!Http1Error::UnknownRequest.closes_connection());
    }
}
