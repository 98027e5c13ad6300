//! What a simulated link and the simulated network do: plain data, changeable at run time.

use std::time::Duration;

/// The behaviour of one direction of a link (or of every link, as the network's default).
///
/// Loss, duplication and reordering apply to simulated segments; the byte stream a reader sees
/// stays ordered and complete, as with TCP: a lost segment arrives one retransmission timeout
/// ([`NetConfig::rto`]) later per loss, a duplicate is discarded by sequence number, a reordered
/// segment is held back until the gap before it is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` for each segment.
    pub jitter: Duration,
    /// Probability (0.0..=1.0) that a transmission of a segment is lost and retransmitted.
    pub loss: f64,
    /// Probability that a segment is delivered twice.
    pub duplicate: f64,
    /// Probability that a segment is held back by [`LinkConfig::reorder_delay`], arriving after
    /// segments sent later.
    pub reorder: f64,
    /// How long a reordered segment is held back.
    pub reorder_delay: Duration,
    /// Bandwidth cap in bytes per virtual second, shared by every connection on this direction
    /// of the link; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Slow reader: the receiving end of this direction drains its receive buffer at no more
    /// than this many bytes per virtual second; `None` is unlimited.
    pub reader_rate: Option<u64>,
}

impl Default for LinkConfig {
    /// A clean link: 50 us latency, nothing else.
    fn default() -> Self {
        LinkConfig {
            latency: Duration::from_micros(50),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            bandwidth: None,
            reader_rate: None,
        }
    }
}

/// Network-wide parameters of a [`SimNet`](crate::SimNet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Largest simulated segment, in bytes.
    pub mss: usize,
    /// Retransmission timeout: what a lost segment (or one sent into a partition) costs.
    pub rto: Duration,
    /// How long a connect waits for the handshake before failing with
    /// [`Error::TimedOut`](crate::Error::TimedOut).
    pub connect_timeout: Duration,
    /// Default send buffer per connection (bytes accepted from sends but not yet transmitted);
    /// `SockOpt::SendBuffer` overrides it per socket.
    pub send_buffer: usize,
    /// Default receive buffer (the receive window) per connection; `SockOpt::RecvBuffer`
    /// overrides it per socket.
    pub recv_buffer: usize,
    /// When true, a reactor's `poll` that finds nothing to hand out moves virtual time forward
    /// to the next event itself (bounded by its timeout). When false, only
    /// [`SimNet::advance_to`](crate::SimNet::advance_to) moves time: the mode for a harness
    /// that owns the clock.
    pub auto_advance: bool,
    /// Fault points where a real kernel may behave so, drawn from the network's seed: short
    /// reads (a receive gets fewer bytes than are buffered), partial writes (the send buffer
    /// takes part of a send, the rest a moment later) and late accepts (a connection waits
    /// in the backlog for up to a millisecond). Byte streams stay complete and in order.
    /// They also fire, from the actor core's seeded generator, inside a deterministic
    /// system with buggify enabled ([`sinew_actors::buggify`]).
    pub buggify: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            mss: 16 * 1024,
            rto: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(10),
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            auto_advance: false,
            buggify: false,
        }
    }
}
