//! Reactor tuning: the receive buffer pool, multishot receive and zero-copy send.

/// How a [`Reactor`](crate::Reactor) is set up. `ReactorConfig::default()` suits a server
/// worker; the fields exist to size memory and to force the portable code paths (tests do
/// that to exercise the fallbacks on kernels that have everything).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorConfig {
    /// Bytes per buffer of the receive pool that multishot receives read into (on io_uring,
    /// the provided buffer ring's buffer size). One completion carries at most this much.
    pub recv_buffer_size: usize,
    /// Buffers in the receive pool: a power of two from 1 to 32768. The pool takes
    /// `recv_buffer_size * recv_buffer_count` bytes, allocated when the reactor is built.
    pub recv_buffer_count: usize,
    /// Use io_uring's native multishot receive with a provided buffer ring where the kernel
    /// has it (Linux 6.0+). When false, or unsupported, multishot receives are emulated with
    /// one receive at a time; the API is the same.
    pub multishot_recv: bool,
    /// Sends of at least this many bytes use zero-copy send (io_uring `SEND_ZC` /
    /// `SENDMSG_ZC`, Linux 6.0+); `None` never does. Below roughly 10 KiB copying is cheaper
    /// than the page pinning and the extra notification. A connection whose first zero-copy
    /// send the kernel reports it copied anyway (loopback, devices without scatter-gather,
    /// where zero copy is measured 2-3 times slower) copies from then on.
    pub zero_copy_threshold: Option<usize>,
    /// Buffers in the registered send pool ([`Reactor::fill_registered`]); 0, the default,
    /// means none. On io_uring the pool is registered with the ring once (its pages pinned
    /// at setup), and sends from it use the ring's fixed buffer instead of pinning or
    /// looking up pages per send.
    ///
    /// [`Reactor::fill_registered`]: crate::Reactor::fill_registered
    pub registered_buffer_count: usize,
    /// Bytes per buffer of the registered send pool. The pool (`registered_buffer_size *
    /// registered_buffer_count` bytes) may take at most 1 GiB, io_uring's limit for one
    /// registered buffer.
    pub registered_buffer_size: usize,
}

impl ReactorConfig {
    /// The default buffer size of the receive pool.
    pub const DEFAULT_RECV_BUFFER_SIZE: usize = 16 * 1024;
    /// The default number of buffers in the receive pool.
    pub const DEFAULT_RECV_BUFFER_COUNT: usize = 256;
    /// The default zero-copy threshold.
    pub const DEFAULT_ZERO_COPY_THRESHOLD: usize = 16 * 1024;

    /// Sets [`ReactorConfig::recv_buffer_size`].
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Sets [`ReactorConfig::recv_buffer_count`].
    pub fn recv_buffer_count(mut self, count: usize) -> Self {
        self.recv_buffer_count = count;
        self
    }

    /// Sets [`ReactorConfig::multishot_recv`].
    pub fn multishot_recv(mut self, native: bool) -> Self {
        self.multishot_recv = native;
        self
    }

    /// Sets [`ReactorConfig::registered_buffer_count`] and
    /// [`ReactorConfig::registered_buffer_size`].
    pub fn registered_buffers(mut self, count: usize, size: usize) -> Self {
        self.registered_buffer_count = count;
        self.registered_buffer_size = size;
        self
    }

    /// Sets [`ReactorConfig::zero_copy_threshold`].
    pub fn zero_copy_threshold(mut self, threshold: Option<usize>) -> Self {
        self.zero_copy_threshold = threshold;
        self
    }

    /// Checks the values: the buffer count must be a power of two up to 32768, the buffer
    /// size between 1 byte and 1 GiB, and the pool at most 4 GiB.
    pub fn validate(&self) -> crate::Result<()> {
        let count = self.recv_buffer_count;
        if !(1..=32768).contains(&count) || !count.is_power_of_two() {
            return Err(crate::Error::InvalidArgument(
                "recv_buffer_count must be a power of two from 1 to 32768",
            ));
        }
        if !(1..=1 << 30).contains(&self.recv_buffer_size) {
            return Err(crate::Error::InvalidArgument(
                "recv_buffer_size must be between 1 byte and 1 GiB",
            ));
        }
        if count.saturating_mul(self.recv_buffer_size) > 1 << 32 {
            return Err(crate::Error::InvalidArgument(
                "the receive pool may take at most 4 GiB",
            ));
        }
        let reg = self.registered_buffer_count;
        if reg > 0 {
            if reg > 1 << 16 || self.registered_buffer_size == 0 {
                return Err(crate::Error::InvalidArgument(
                    "registered_buffer_count must be at most 65536 and the size non-zero",
                ));
            }
            if reg.saturating_mul(self.registered_buffer_size) > 1 << 30 {
                return Err(crate::Error::InvalidArgument(
                    "the registered send pool may take at most 1 GiB",
                ));
            }
        }
        Ok(())
    }
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            recv_buffer_size: Self::DEFAULT_RECV_BUFFER_SIZE,
            recv_buffer_count: Self::DEFAULT_RECV_BUFFER_COUNT,
            multishot_recv: true,
            zero_copy_threshold: Some(Self::DEFAULT_ZERO_COPY_THRESHOLD),
            registered_buffer_count: 0,
            registered_buffer_size: Self::DEFAULT_RECV_BUFFER_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(ReactorConfig::default().validate().is_ok());
        assert!(ReactorConfig::default()
            .recv_buffer_count(3)
            .validate()
            .is_err());
        assert!(ReactorConfig::default()
            .recv_buffer_count(65536)
            .validate()
            .is_err());
        assert!(ReactorConfig::default()
            .recv_buffer_size(0)
            .validate()
            .is_err());
        assert!(ReactorConfig::default()
            .recv_buffer_count(1)
            .recv_buffer_size(1)
            .validate()
            .is_ok());
        assert!(ReactorConfig::default()
            .registered_buffers(64, 16 * 1024)
            .validate()
            .is_ok());
        assert!(ReactorConfig::default()
            .registered_buffers(1 << 17, 1)
            .validate()
            .is_err());
        assert!(ReactorConfig::default()
            .registered_buffers(2, 1 << 30)
            .validate()
            .is_err());
    }
}
