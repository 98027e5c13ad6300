//! Limits, as plain data.
//!
//! Every buffer a RESP codec may grow is bounded by one of these numbers, so memory per
//! connection is bounded no matter what the peer sends: a length on the wire is checked
//! against its limit before anything waits for (or reserves room for) the data it announces.

/// Size limits for one connection (server and client side).
///
/// The defaults follow redis-server's own (`proto-max-bulk-len`, the inline request limit)
/// where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Longest bulk string (`$<len>`), like redis's `proto-max-bulk-len`. Longer is a
    /// protocol error (`ERR Protocol error: invalid bulk length`).
    pub max_bulk_len: usize,
    /// Most elements in one aggregate (`*<n>`; a map counts its pairs). More is a protocol
    /// error (`ERR Protocol error: invalid multibulk length`).
    pub max_array_len: usize,
    /// Deepest aggregate nesting in a reply the client decodes (a command is always depth
    /// 1). Values above [`RespLimits::HARD_MAX_DEPTH`] are clamped to it.
    pub max_depth: usize,
    /// Longest inline command line (without its line terminator), like redis's 64 KiB.
    /// Longer is a protocol error (`ERR Protocol error: too big inline request`).
    pub max_inline_len: usize,
    /// Most commands decoded and not yet answered; at this many the server codec stops
    /// decoding (`poll_event` returns `None`, `wants_read` is false) until answers go out.
    /// Backpressure, not an error.
    pub max_pipeline: usize,
    /// Most encoded bytes waiting to be sent before the server codec stops decoding (and
    /// [`send_push`](crate::protocol::ServerCodec::send_push) starts refusing messages).
    pub max_buffered_output: usize,
}

impl RespLimits {
    /// Upper bound for `max_depth`. Decoding never recurses, but a [`Value`](super::Value)
    /// is dropped, cloned, compared and encoded recursively, so the nesting of decoded
    /// values stays far below what a thread's stack holds.
    pub const HARD_MAX_DEPTH: usize = 128;

    /// `max_depth`, clamped to [`RespLimits::HARD_MAX_DEPTH`] (and at least 1).
    pub fn depth(&self) -> usize {
        self.max_depth.clamp(1, Self::HARD_MAX_DEPTH)
    }
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_depth: 64,
            max_inline_len: 64 * 1024,
            max_pipeline: 1024,
            max_buffered_output: 16 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_redis() {
        let l = RespLimits::default();
        assert_eq!(l.max_bulk_len, 512 << 20);
        assert_eq!(l.max_inline_len, 64 << 10);
        assert_eq!(l.depth(), 64);
        let deep = RespLimits {
            max_depth: usize::MAX,
            ..l
        };
        assert_eq!(deep.depth(), RespLimits::HARD_MAX_DEPTH);
        let zero = RespLimits { max_depth: 0, ..l };
        assert_eq!(zero.depth(), 1);
    }
}
