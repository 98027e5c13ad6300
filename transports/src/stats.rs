//! Counters a reactor keeps about its buffer pool and its io_uring fast paths.

/// A snapshot of a reactor's counters ([`Reactor::stats`](crate::Reactor::stats)). Counters
/// only grow; the gauges (`recv_buffers_lent`, `zero_copy_pending`) go up and down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStats {
    /// Buffers in the receive pool (0 where none is used: io_uring emulating multishot
    /// receive).
    pub recv_buffers: usize,
    /// Pool buffers currently lent out as `Bytes` (returned when the last clone drops).
    pub recv_buffers_lent: usize,
    /// Multishot receive chunks that were copied out of the pool instead of lent, because
    /// most of the pool was lent out (or, on epoll, read into a fresh allocation because
    /// the pool was empty). Keeps the pool from running dry while consumers hold chunks.
    pub recv_copied: u64,
    /// Native multishot receives submitted to the kernel (re-arms included).
    pub multishot_arms: u64,
    /// Zero-copy sends submitted (`SEND_ZC` / `SENDMSG_ZC`).
    pub zero_copy_sends: u64,
    /// Zero-copy sends the kernel carried out by copying after all (loopback does; so do
    /// devices without scatter-gather). Only counted where the kernel reports it (6.2+);
    /// such a connection stops using zero copy.
    pub zero_copy_copied: u64,
    /// Zero-copy sends whose notification has not arrived yet: the reactor still holds a
    /// reference to their buffers.
    pub zero_copy_pending: usize,
    /// Sends (or parts of partial sends) the kernel carried out from the registered send
    /// pool with io_uring's fixed buffer.
    pub registered_sends: u64,
    /// Buffers of the registered send pool currently lent out as `Bytes`.
    pub registered_buffers_lent: usize,
}

impl IoStats {
    /// Adds `other`'s counters and gauges to these (a reactor running several backends).
    pub(crate) fn add(&mut self, other: &IoStats) {
        self.recv_buffers += other.recv_buffers;
        self.recv_buffers_lent += other.recv_buffers_lent;
        self.recv_copied += other.recv_copied;
        self.multishot_arms += other.multishot_arms;
        self.zero_copy_sends += other.zero_copy_sends;
        self.zero_copy_copied += other.zero_copy_copied;
        self.zero_copy_pending += other.zero_copy_pending;
        self.registered_sends += other.registered_sends;
        self.registered_buffers_lent += other.registered_buffers_lent;
    }
}
