//! The in-memory simulated network: a deterministic backend for tests and fault injection.
//!
//! A [`SimNet`] is one simulated network shared by every reactor of a simulation; each
//! reactor ([`SimNet::reactor`]) is one host, addressed by IP (`10.0.0.1`, ...), whose
//! listeners and connections behave like TCP. Time is virtual and belongs to the caller:
//! [`SimNet::next_event_time`] says when something happens next and [`SimNet::advance_to`]
//! moves the clock there, so a harness on the actor core's deterministic system drives the
//! network with the same clock as its timers. All randomness (jitter, loss, duplication,
//! reordering) comes from the net's seed: the same seed and the same calls give the same
//! completions at the same virtual times.
//!
//! Faults are set at run time through the [`SimNet`] handle: per-direction [`LinkConfig`]s
//! (latency, jitter, loss, duplication, reordering, bandwidth, slow reader), partitions
//! (one-way or both), and connection resets (of a host, or between two hosts).
//! Besides, fault points where a real kernel may behave so (short reads, partial writes,
//! late accepts) fire when [`NetConfig::buggify`] is on, or inside a deterministic actor
//! system with buggify enabled ([`sinew_actors::buggify`]): seeded, deterministic, and the
//! byte streams stay complete and in order.
//!
//! `sinew::testkit` is such a harness: its simulated hosts each run their actors on a reactor
//! of one `SimNet`, advanced with the actors' virtual clock.

mod config;
mod net;
mod rng;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sinew_actors::Unpark;

pub use config::{LinkConfig, NetConfig};

use crate::backend::Backend;
use crate::capabilities::{Capabilities, ConnectionKind};
use crate::completion::{Completion, SocketId, Token};
use crate::datagram::DatagramAddr;
use crate::error::{Error, Result};
use crate::io::Io;
use crate::options::{SockOpt, SockOptName};
use crate::reactor::Reactor;
use crate::write::WriteOp;
use net::{ns, NetState, Time};

/// The host of reactors made by `Reactor::new(Backend::Sim)`.
pub(crate) const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// With automatic time and no timeout, one `poll` jumps at most this far in virtual time (a
/// segment sent into a lasting partition is retransmitted forever).
const MAX_IDLE_JUMP: Duration = Duration::from_secs(60);

thread_local! {
    static CURRENT: RefCell<Option<SimNet>> = const { RefCell::new(None) };
}

fn dur(t: Time) -> Duration {
    Duration::from_nanos(t)
}

/// A handle to one simulated network; clones share it.
///
/// A simulated reactor never blocks: its `poll` hands out what is due at the current virtual
/// time and, only with [`NetConfig::auto_advance`], jumps time to the next event. Drive it from
/// a harness loop (poll every reactor; when none has anything, [`SimNet::step`] or
/// [`SimNet::advance_to`] the time of the caller's own next timer), not from a parked worker.
///
/// ```
/// use std::time::Duration;
/// use sinew_transports::{LinkConfig, SimNet};
///
/// let net = SimNet::new(42);
/// let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
/// let _server = net.reactor(a);
/// let _client = net.reactor(b);
/// net.set_link(b, a, LinkConfig { latency: Duration::from_millis(5), ..LinkConfig::default() });
/// net.partition(a, b);
/// net.heal(a, b);
/// assert_eq!(net.now(), Duration::ZERO);
/// ```
#[derive(Clone)]
pub struct SimNet {
    inner: Arc<Mutex<NetState>>,
}

impl SimNet {
    /// A network with default parameters whose clock only moves through
    /// [`SimNet::advance_to`] (the caller owns time).
    pub fn new(seed: u64) -> SimNet {
        SimNet::with_config(seed, NetConfig::default())
    }

    /// A network with `config`.
    pub fn with_config(seed: u64, config: NetConfig) -> SimNet {
        SimNet {
            inner: Arc::new(Mutex::new(NetState::new(seed, config))),
        }
    }

    /// This thread's default network, used by `Reactor::new(Backend::Sim)`: seed 0, and
    /// [`NetConfig::auto_advance`] on, so a reactor polled on its own moves time forward.
    pub fn current() -> SimNet {
        CURRENT.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| {
                    SimNet::with_config(
                        0,
                        NetConfig {
                            auto_advance: true,
                            ..NetConfig::default()
                        },
                    )
                })
                .clone()
        })
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        // The state stays consistent between calls, so a panic elsewhere does not poison it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The seed all randomness derives from.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// A reactor for `host` on this network. Several reactors may share a host (like
    /// processes); each owns its sockets. Listening on an unspecified or loopback address
    /// binds `host`; connecting to loopback reaches `host`.
    pub fn reactor(&self, host: IpAddr) -> Reactor {
        let id = self.lock().add_reactor(host);
        Reactor::from_io(
            Box::new(SimReactor {
                net: self.clone(),
                id,
            }),
            Backend::Sim,
        )
    }

    /// The network-wide parameters.
    pub fn config(&self) -> NetConfig {
        self.lock().config
    }

    /// Replaces the network-wide parameters (buffer sizes apply to sockets created later).
    pub fn set_config(&self, config: NetConfig) {
        self.lock().config = config;
    }

    /// Sets how long connects wait before failing with [`Error::TimedOut`] (for connects
    /// started later).
    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.lock().config.connect_timeout = timeout;
    }

    /// Current virtual time, since the network was created.
    pub fn now(&self) -> Duration {
        dur(self.lock().now)
    }

    /// When the next event (a segment arriving, a timeout) is due, if any.
    pub fn next_event_time(&self) -> Option<Duration> {
        self.lock().next_event().map(dur)
    }

    /// Moves virtual time to `now`, processing every event due until then in order;
    /// completions wait in their reactors for the next `poll`. Time never goes back.
    pub fn advance_to(&self, now: Duration) {
        self.lock().advance_to(ns(now));
    }

    /// Moves virtual time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut st = self.lock();
        let to = st.now.saturating_add(ns(d));
        st.advance_to(to);
    }

    /// Jumps to the next event time and processes what is due then; returns that time, or
    /// `None` when nothing is scheduled.
    pub fn step(&self) -> Option<Duration> {
        let mut st = self.lock();
        let t = st.next_event()?;
        st.advance_to(t);
        Some(dur(t))
    }

    /// The link used when no per-pair link is set.
    pub fn default_link(&self) -> LinkConfig {
        self.lock().default_link
    }

    /// Sets the link used when no per-pair link is set.
    pub fn set_default_link(&self, link: LinkConfig) {
        self.lock().default_link = link;
    }

    /// The link from `src` to `dst` (its own, or the default).
    pub fn link(&self, src: IpAddr, dst: IpAddr) -> LinkConfig {
        self.lock().link(src, dst)
    }

    /// Sets the link from `src` to `dst` (one direction).
    pub fn set_link(&self, src: IpAddr, dst: IpAddr, link: LinkConfig) {
        self.lock().links.insert((src, dst), link);
    }

    /// Sets the link both ways between `a` and `b`.
    pub fn set_link_both(&self, a: IpAddr, b: IpAddr, link: LinkConfig) {
        let mut st = self.lock();
        st.links.insert((a, b), link);
        st.links.insert((b, a), link);
    }

    /// Returns the `src -> dst` direction to the default link.
    pub fn clear_link(&self, src: IpAddr, dst: IpAddr) {
        self.lock().links.remove(&(src, dst));
    }

    /// Blocks traffic both ways between `a` and `b`. Segments and handshakes sent into the
    /// partition are retransmitted every [`NetConfig::rto`] until it heals; connects time out.
    pub fn partition(&self, a: IpAddr, b: IpAddr) {
        let mut st = self.lock();
        st.blocked.insert((a, b));
        st.blocked.insert((b, a));
    }

    /// Blocks traffic from `from` to `to` only.
    pub fn partition_one_way(&self, from: IpAddr, to: IpAddr) {
        self.lock().blocked.insert((from, to));
    }

    /// Lets traffic flow both ways between `a` and `b` again.
    pub fn heal(&self, a: IpAddr, b: IpAddr) {
        let mut st = self.lock();
        st.blocked.remove(&(a, b));
        st.blocked.remove(&(b, a));
    }

    /// Lets traffic flow from `from` to `to` again (the other direction is unchanged).
    pub fn heal_one_way(&self, from: IpAddr, to: IpAddr) {
        self.lock().blocked.remove(&(from, to));
    }

    /// Every blocked direction, as `(from, to)` pairs in address order.
    pub fn partitions(&self) -> Vec<(IpAddr, IpAddr)> {
        self.lock().blocked.iter().copied().collect()
    }

    /// Removes every partition.
    pub fn heal_all(&self) {
        self.lock().blocked.clear();
    }

    /// True if traffic from `from` to `to` is blocked.
    pub fn is_partitioned(&self, from: IpAddr, to: IpAddr) -> bool {
        self.lock().blocked.contains(&(from, to))
    }

    /// Resets every connection with an end on `host`: both ends fail their operations with
    /// [`Error::ConnectionReset`] at once. Returns how many sockets were reset.
    pub fn reset_connections(&self, host: IpAddr) -> usize {
        self.lock().reset_host(host)
    }

    /// Resets every connection between hosts `a` and `b` (whichever side connected): both
    /// ends fail their operations with [`Error::ConnectionReset`] at once; connections of
    /// either host with other hosts are untouched. Returns how many sockets were reset.
    pub fn reset_between(&self, a: IpAddr, b: IpAddr) -> usize {
        self.lock().reset_between(a, b)
    }
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("SimNet")
            .field("seed", &st.seed)
            .field("now", &dur(st.now))
            .finish_non_exhaustive()
    }
}

/// Nothing to wake: a simulated reactor never blocks.
struct NoopUnpark;

impl Unpark for NoopUnpark {
    fn unpark(&self) {}
}

/// One host's reactor on a [`SimNet`].
pub(crate) struct SimReactor {
    net: SimNet,
    id: u32,
}

impl Drop for SimReactor {
    fn drop(&mut self) {
        self.net.lock().remove_reactor(self.id);
    }
}

impl Io for SimReactor {
    fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        self.net.lock().listen(self.id, addr, opts)
    }

    fn accept(&mut self, listener: SocketId, token: Token) {
        self.net.lock().accept(self.id, listener, token)
    }

    fn connect(&mut self, addr: SocketAddr, opts: &[SockOpt], token: Token) -> Result<SocketId> {
        self.net.lock().connect(self.id, addr, opts, None, token)
    }

    fn connect_timeout(
        &mut self,
        addr: SocketAddr,
        opts: &[SockOpt],
        timeout: Duration,
        token: Token,
    ) -> Result<SocketId> {
        self.net
            .lock()
            .connect(self.id, addr, opts, Some(timeout), token)
    }

    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.net.lock().recv(self.id, socket, buf, None, token)
    }

    fn recv_timeout(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        timeout: Duration,
        token: Token,
    ) -> Result<(), (Error, BytesMut)> {
        self.net
            .lock()
            .recv(self.id, socket, buf, Some(timeout), token);
        Ok(())
    }

    fn recv_multishot(&mut self, socket: SocketId, token: Token) -> Result<()> {
        self.net.lock().recv_multishot(self.id, socket, token)
    }

    fn cancel_recv_multishot(&mut self, socket: SocketId) -> Result<()> {
        self.net.lock().cancel_recv_multishot(self.id, socket)
    }

    fn write(&mut self, socket: SocketId, op: WriteOp) {
        self.net.lock().write(self.id, socket, op)
    }

    fn close(&mut self, socket: SocketId, token: Token) {
        self.net.lock().close(self.id, socket, token)
    }

    fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        self.net.lock().pause_recv(self.id, socket)
    }

    fn resume_recv(&mut self, socket: SocketId) -> Result<()> {
        self.net.lock().resume_recv(self.id, socket)
    }

    fn take_write_dirty(&mut self, out: &mut Vec<SocketId>) {
        self.net.lock().take_write_dirty(self.id, out)
    }

    fn send_queued(&self, socket: SocketId) -> Result<usize> {
        self.net.lock().send_queued(self.id, socket)
    }

    fn send_to(&mut self, socket: SocketId, buf: Bytes, to: DatagramAddr, token: Token) {
        let err = Error::Unsupported("datagrams on the simulated network");
        let c = crate::datagram::sent_to(socket, token, buf, to, Err(err));
        self.net.lock().push_completion(self.id, c);
    }

    fn recv_from(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        let err = Error::Unsupported("datagrams on the simulated network");
        let c = crate::datagram::received_from(socket, token, buf, None, false, Err(err));
        self.net.lock().push_completion(self.id, c);
    }

    fn fd(&self, _socket: SocketId) -> Option<BorrowedFd<'_>> {
        None
    }

    fn kind(&self, socket: SocketId) -> Option<ConnectionKind> {
        // Every simulated socket is TCP-like.
        self.net
            .lock()
            .local_addr(self.id, socket)
            .ok()
            .map(|_| ConnectionKind::Stream)
    }

    fn raw_fd(&self, socket: SocketId) -> Result<BorrowedFd<'_>> {
        self.net.lock().local_addr(self.id, socket)?;
        Err(Error::Unsupported("simulated sockets have no descriptor"))
    }

    fn local_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        self.net.lock().local_addr(self.id, socket)
    }

    fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        self.net.lock().peer_addr(self.id, socket)
    }

    fn set_option(&self, socket: SocketId, opt: SockOpt) -> Result<()> {
        self.net.lock().set_option(self.id, socket, opt)
    }

    fn option(&self, socket: SocketId, name: SockOptName) -> Result<SockOpt> {
        self.net.lock().option(self.id, socket, name)
    }

    fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<()> {
        let mut st = self.net.lock();
        let now = st.now;
        // Events due now (zero-latency links schedule at the current time).
        st.advance_to(now);
        if !st.has_ready(self.id) && st.config.auto_advance {
            let limit = now.saturating_add(ns(timeout.unwrap_or(MAX_IDLE_JUMP)));
            while let Some(t) = st.next_event() {
                if t > limit {
                    st.advance_to(limit);
                    break;
                }
                st.advance_to(t);
                if st.has_ready(self.id) {
                    break;
                }
            }
        }
        st.take_ready(self.id, out);
        Ok(())
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        Arc::new(NoopUnpark)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vectored_io: true,
            // Deadlines are virtual-time events of the network.
            operation_timeouts: true,
            ..Capabilities::default()
        }
    }

    fn socket_count(&self) -> usize {
        self.net.lock().socket_count(self.id)
    }
}
