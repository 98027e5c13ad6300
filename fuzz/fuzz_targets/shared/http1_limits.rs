//! The small HTTP/1.1 limits both HTTP fuzz targets run under, chosen by the control byte:
//! bit 6 makes almost every body streamed, bit 7 accepts bare LF line endings. Small limits
//! make every limit reachable by short inputs.

use sinew_protocols::http1::{LineEndingPolicy, Limits};

/// Limits for control byte `ctl`.
pub fn for_control(ctl: u8) -> Limits {
    Limits {
        max_request_line: 256,
        max_head_size: 1024,
        max_headers: 16,
        max_body_size: 4096,
        body_stream_threshold: if ctl & 0x40 != 0 { 8 } else { 512 },
        max_chunk_line: 64,
        max_pipelined: 8,
        max_buffered_output: 16 * 1024,
        line_endings: if ctl & 0x80 != 0 {
            LineEndingPolicy::AllowBareLf
        } else {
            LineEndingPolicy::RequireCrlf
        },
    }
}
