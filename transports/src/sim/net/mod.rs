//! The simulated network's state: every host's sockets, the segments in flight, the virtual
//! clock and the seeded generator. One [`NetState`] sits behind each [`SimNet`](super::SimNet)
//! and is shared by all the reactors of a simulation.
//!
//! Connections follow TCP's shape: a handshake (SYN, SYN-ACK or a refusal), a byte stream
//! per direction cut into sequence-numbered segments, a receive window (the receiver's buffer
//! minus what it has not read yet), FIN for end of stream and RST for resets. Loss costs a
//! retransmission timeout; the receiver reassembles by sequence number, so the stream a reader
//! sees is ordered and complete unless the connection is reset.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::config::{LinkConfig, NetConfig};
use super::rng::Rng;
use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::{Error, Result};
use crate::io::ensure_spare;
use crate::options::{SockOpt, SockOptName};
use crate::slab::Slab;
use crate::write::WriteOp;

mod api;

/// Virtual time in nanoseconds since the simulation started.
pub(crate) type Time = u64;

/// A duration as virtual nanoseconds (saturating).
pub(crate) fn ns(d: Duration) -> Time {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The first ephemeral port handed to connecting sockets.
const EPHEMERAL: u16 = 49152;
/// Losses of one segment are retried at most this often (so `loss = 1.0` cannot hang).
const MAX_RETRANSMITS: u32 = 64;

/// Something that happens at a virtual time.
#[derive(Clone)]
enum Ev {
    Syn {
        client: u64,
        to: SocketAddr,
    },
    SynAck {
        client: u64,
        server: u64,
    },
    Refused {
        client: u64,
    },
    ConnectTimeout {
        client: u64,
    },
    Segment {
        from: u64,
        to: u64,
        seq: u64,
        data: Bytes,
        fin: bool,
    },
    Rst {
        to: u64,
    },
    Wake {
        ep: u64,
    },
    /// The deadline of a receive ([`Reactor::recv_timeout`](crate::Reactor::recv_timeout)):
    /// fires if receive `timer` is still the endpoint's active one.
    RecvTimeout {
        ep: u64,
        timer: u64,
    },
    /// Continues a send the network accepted only part of (a buggified partial write).
    Pump {
        ep: u64,
    },
    /// Hands a backlog connection to an accept that a fault point held back.
    Accept {
        listener: u64,
    },
}

impl Ev {
    /// Whether a loss (or a partition) of this event is repaired by retransmission.
    fn retransmitted(&self) -> bool {
        matches!(
            self,
            Ev::Syn { .. } | Ev::SynAck { .. } | Ev::Segment { .. }
        )
    }
}

struct Scheduled {
    at: Time,
    seq: u64,
    /// `(src, dst)` hosts for events that cross a link (partitions apply), `None` for local.
    route: Option<(IpAddr, IpAddr)>,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Why a connection ended abnormally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    Reset,
    Refused,
    TimedOut,
}

impl Fail {
    fn error(self) -> Error {
        match self {
            Fail::Reset => Error::ConnectionReset,
            Fail::Refused => Error::ConnectionRefused,
            Fail::TimedOut => Error::TimedOut,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Established,
    Failed(Fail),
    /// Closed by its owner; still flushing accepted bytes and the FIN.
    Closing,
}

struct Listener {
    backlog: VecDeque<u64>,
    accept: Option<Token>,
    /// An accept held back by a fault point is scheduled: do not hand out connections.
    accept_delayed: bool,
}

/// A queued plain receive.
struct Recv {
    token: Token,
    buf: BytesMut,
    /// Its deadline's length, counted from when it becomes the socket's active receive.
    timeout: Option<Duration>,
    /// The id of its armed deadline ([`Ev::RecvTimeout`]).
    timer: Option<u64>,
}

struct Stream {
    state: State,
    peer: Option<u64>,
    peer_addr: SocketAddr,
    connect: Option<Token>,
    // Send side.
    writes: VecDeque<WriteOp>,
    unsent: VecDeque<Bytes>,
    unsent_len: usize,
    snd_nxt: u64,
    fin_pending: bool,
    fin_sent: bool,
    write_shut: bool,
    send_buffer: usize,
    // Receive side.
    rbuf: VecDeque<Bytes>,
    rbuf_len: usize,
    rcv_nxt: u64,
    rcv_read: u64,
    ooo: BTreeMap<u64, Bytes>,
    fin_at: Option<u64>,
    read_shut: bool,
    recv_buffer: usize,
    recvs: VecDeque<Recv>,
    /// The multishot receive's token, if one is active (never together with `recvs`).
    multi: Option<Token>,
    /// Slow reader: the next virtual time a read may take bytes.
    drain_at: Time,
    wake_pending: bool,
    linger_zero: bool,
    paused: bool,
}

impl Stream {
    fn new(state: State, peer: Option<u64>, peer_addr: SocketAddr, cfg: &NetConfig) -> Self {
        Stream {
            state,
            peer,
            peer_addr,
            connect: None,
            writes: VecDeque::new(),
            unsent: VecDeque::new(),
            unsent_len: 0,
            snd_nxt: 0,
            fin_pending: false,
            fin_sent: false,
            write_shut: false,
            send_buffer: cfg.send_buffer.max(1),
            rbuf: VecDeque::new(),
            rbuf_len: 0,
            rcv_nxt: 0,
            rcv_read: 0,
            ooo: BTreeMap::new(),
            fin_at: None,
            read_shut: false,
            recv_buffer: cfg.recv_buffer.max(1),
            recvs: VecDeque::new(),
            multi: None,
            drain_at: 0,
            wake_pending: false,
            linger_zero: false,
            paused: false,
        }
    }

    fn apply(&mut self, opt: SockOpt) {
        match opt {
            SockOpt::SendBuffer(n) => self.send_buffer = n.max(1),
            SockOpt::RecvBuffer(n) => self.recv_buffer = n.max(1),
            SockOpt::Linger(l) => self.linger_zero = l == Some(Duration::ZERO),
            _ => {}
        }
    }

    /// Fails every queued operation with `fail`'s error, dropping buffered data.
    fn fail_ops(&mut self, sid: SocketId, fail: Fail, out: &mut Vec<Completion>) {
        if let Some(token) = self.connect.take() {
            out.push(Completion {
                token,
                event: Event::Connected {
                    socket: sid,
                    result: Err(fail.error()),
                },
            });
        }
        for r in self.recvs.drain(..) {
            out.push(recv_done(sid, r.token, r.buf, Err(fail.error())));
        }
        if let Some(token) = self.multi.take() {
            out.push(multi_done(sid, token, Err(fail.error())));
        }
        for op in self.writes.drain(..) {
            out.push(op.complete(sid, Err(fail.error())));
        }
        self.unsent.clear();
        self.unsent_len = 0;
        self.rbuf.clear();
        self.rbuf_len = 0;
        self.ooo.clear();
    }
}

enum Kind {
    Listener(Listener),
    Stream(Box<Stream>),
}

struct Endpoint {
    /// The reactor and socket id that own it; `None` while waiting in a listener's backlog
    /// or after close (flushing).
    owner: Option<(u32, SocketId)>,
    local: SocketAddr,
    opts: Vec<SockOpt>,
    kind: Kind,
}

impl Endpoint {
    fn stream(&mut self) -> Option<&mut Stream> {
        match &mut self.kind {
            Kind::Stream(s) => Some(s),
            Kind::Listener(_) => None,
        }
    }
}

struct ReactorState {
    host: IpAddr,
    sockets: Slab<u64>,
    ready: Vec<Completion>,
    /// Sockets whose send queue changed since the reactor last looked.
    write_dirty: Vec<SocketId>,
}

fn recv_done(socket: SocketId, token: Token, buf: BytesMut, result: Result<usize>) -> Completion {
    Completion {
        token,
        event: Event::Received {
            socket,
            buf,
            result,
        },
    }
}

/// The last completion of a multishot receive.
fn multi_done(socket: SocketId, token: Token, result: Result<Bytes>) -> Completion {
    Completion {
        token,
        event: Event::ReceivedBytes {
            socket,
            result,
            more: false,
        },
    }
}

/// Fault-point probabilities (see [`NetState::buggify`]).
const SHORT_READ: f64 = 0.25;
const PARTIAL_WRITE: f64 = 0.25;
const DELAYED_ACCEPT: f64 = 0.25;

fn opt_name(opt: &SockOpt) -> Option<SockOptName> {
    Some(match opt {
        SockOpt::NoDelay(_) => SockOptName::NoDelay,
        SockOpt::KeepAlive(_) => SockOptName::KeepAlive,
        SockOpt::SendBuffer(_) => SockOptName::SendBuffer,
        SockOpt::RecvBuffer(_) => SockOptName::RecvBuffer,
        SockOpt::ReuseAddr(_) => SockOptName::ReuseAddr,
        SockOpt::ReusePort(_) => SockOptName::ReusePort,
        SockOpt::DeferAccept(_) => SockOptName::DeferAccept,
        SockOpt::QuickAck(_) => SockOptName::QuickAck,
        SockOpt::Linger(_) => SockOptName::Linger,
        SockOpt::Cork(_) => SockOptName::Cork,
        SockOpt::IncomingCpu(_) => SockOptName::IncomingCpu,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Everything a simulation shares; see the module docs.
pub(crate) struct NetState {
    pub(crate) seed: u64,
    pub(crate) now: Time,
    rng: Rng,
    next_seq: u64,
    events: BinaryHeap<Reverse<Scheduled>>,
    pub(crate) config: NetConfig,
    pub(crate) default_link: LinkConfig,
    pub(crate) links: BTreeMap<(IpAddr, IpAddr), LinkConfig>,
    pub(crate) blocked: BTreeSet<(IpAddr, IpAddr)>,
    link_free: BTreeMap<(IpAddr, IpAddr), Time>,
    listeners: BTreeMap<SocketAddr, u64>,
    endpoints: BTreeMap<u64, Endpoint>,
    next_ep: u64,
    reactors: BTreeMap<u32, ReactorState>,
    next_reactor: u32,
    ports: BTreeMap<IpAddr, u16>,
    /// Ids of receive deadlines.
    next_timer: u64,
}

impl NetState {
    pub(crate) fn new(seed: u64, config: NetConfig) -> Self {
        NetState {
            seed,
            now: 0,
            rng: Rng::new(seed),
            next_seq: 0,
            events: BinaryHeap::new(),
            config,
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            blocked: BTreeSet::new(),
            link_free: BTreeMap::new(),
            listeners: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            next_ep: 0,
            reactors: BTreeMap::new(),
            next_reactor: 0,
            ports: BTreeMap::new(),
            next_timer: 0,
        }
    }

    /// A fault point where a real kernel may legitimately behave so (a short read, a
    /// partial write, a late accept): true with probability `p` when the network's
    /// [`NetConfig::buggify`] is on (drawn from its seeded generator), or when the caller
    /// runs inside a deterministic actor system with buggify enabled
    /// ([`sinew_actors::buggify`]). Always false otherwise, and then it draws nothing, so
    /// plain simulations keep their sequences.
    fn buggify(&mut self, p: f64) -> bool {
        if self.config.buggify {
            return self.rng.chance(p);
        }
        sinew_actors::buggify(p)
    }

    // ----- the clock -------------------------------------------------------------------

    /// The time of the earliest pending event that still matters (connect timeouts of
    /// connections that were established meanwhile are dropped, not reported).
    pub(crate) fn next_event(&mut self) -> Option<Time> {
        while let Some(top) = self.events.peek() {
            let stale = match top.0.ev {
                Ev::ConnectTimeout { client } => !matches!(
                    self.endpoints.get(&client).map(|e| &e.kind),
                    Some(Kind::Stream(st)) if st.state == State::Connecting
                ),
                Ev::RecvTimeout { ep, timer } => !matches!(
                    self.endpoints.get(&ep).map(|e| &e.kind),
                    Some(Kind::Stream(st)) if st.recvs.front().and_then(|r| r.timer) == Some(timer)
                ),
                _ => false,
            };
            if !stale {
                return Some(top.0.at);
            }
            self.events.pop();
        }
        None
    }

    /// Processes every event due at or before `t`, in (time, submission) order, and sets the
    /// clock to `t` (time never goes backwards).
    pub(crate) fn advance_to(&mut self, t: Time) {
        while let Some(top) = self.events.peek() {
            if top.0.at > t {
                break;
            }
            let Some(Reverse(s)) = self.events.pop() else {
                break;
            };
            self.now = self.now.max(s.at);
            self.handle(s);
        }
        self.now = self.now.max(t);
    }

    fn schedule(&mut self, at: Time, route: Option<(IpAddr, IpAddr)>, ev: Ev) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Reverse(Scheduled { at, seq, route, ev }));
    }

    pub(crate) fn link(&self, src: IpAddr, dst: IpAddr) -> LinkConfig {
        self.links
            .get(&(src, dst))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Sends `ev` over the `src -> dst` link: bandwidth queueing, latency, jitter, loss (as
    /// retransmission delay) and, for data segments, reordering and duplication.
    fn transmit(&mut self, src: IpAddr, dst: IpAddr, len: usize, ev: Ev, data: bool) {
        let link = self.link(src, dst);
        let mut at = self.now;
        if let Some(bw) = link.bandwidth.filter(|&b| b > 0) {
            let free = self.link_free.entry((src, dst)).or_insert(0);
            let depart = (*free).max(at);
            let serialize = (len as u128 * 1_000_000_000 / u128::from(bw)) as u64;
            *free = depart.saturating_add(serialize);
            at = *free;
        }
        at = at
            .saturating_add(ns(link.latency))
            .saturating_add(self.rng.upto(ns(link.jitter)));
        let rto = ns(self.config.rto);
        let mut losses = 0;
        while losses < MAX_RETRANSMITS && self.rng.chance(link.loss) {
            at = at.saturating_add(rto);
            losses += 1;
        }
        if data && self.rng.chance(link.reorder) {
            at = at.saturating_add(ns(link.reorder_delay));
        }
        if data && self.rng.chance(link.duplicate) {
            let later = at.saturating_add(1 + self.rng.upto(ns(link.jitter)));
            self.schedule(later, Some((src, dst)), ev.clone());
        }
        self.schedule(at, Some((src, dst)), ev);
    }

    fn handle(&mut self, s: Scheduled) {
        if let Some((src, dst)) = s.route {
            if self.blocked.contains(&(src, dst)) {
                if s.ev.retransmitted() {
                    // Sent into a partition: the sender retransmits after a timeout.
                    let at = self.now.saturating_add(ns(self.config.rto));
                    self.schedule(at, s.route, s.ev);
                }
                return;
            }
        }
        match s.ev {
            Ev::Syn { client, to } => self.on_syn(client, to),
            Ev::SynAck { client, server } => self.on_synack(client, server),
            Ev::Refused { client } => self.on_connect_failed(client, Fail::Refused),
            Ev::ConnectTimeout { client } => self.on_connect_failed(client, Fail::TimedOut),
            Ev::Segment {
                from,
                to,
                seq,
                data,
                fin,
            } => self.on_segment(from, to, seq, data, fin),
            Ev::Rst { to } => self.fail(to, Fail::Reset),
            Ev::Wake { ep } => {
                if let Some(st) = self.endpoints.get_mut(&ep).and_then(Endpoint::stream) {
                    st.wake_pending = false;
                }
                self.drive_recv(ep);
            }
            Ev::RecvTimeout { ep, timer } => self.on_recv_timeout(ep, timer),
            Ev::Pump { ep } => self.pump(ep),
            Ev::Accept { listener } => {
                if let Some(Kind::Listener(l)) =
                    self.endpoints.get_mut(&listener).map(|e| &mut e.kind)
                {
                    l.accept_delayed = false;
                }
                self.drive_accept(listener);
            }
        }
    }

    // ----- protocol events --------------------------------------------------------------

    fn is_connecting(&mut self, key: u64) -> bool {
        self.endpoints
            .get_mut(&key)
            .and_then(Endpoint::stream)
            .is_some_and(|s| s.state == State::Connecting)
    }

    fn on_syn(&mut self, client: u64, to: SocketAddr) {
        let Some(client_addr) = self.endpoints.get(&client).map(|e| e.local) else {
            return;
        };
        if !self.is_connecting(client) {
            return;
        }
        let Some(&listener) = self.listeners.get(&to) else {
            self.transmit(to.ip(), client_addr.ip(), 0, Ev::Refused { client }, false);
            return;
        };
        let opts = self
            .endpoints
            .get(&listener)
            .map(|l| l.opts.clone())
            .unwrap_or_default();
        let mut stream = Stream::new(State::Established, Some(client), client_addr, &self.config);
        for opt in &opts {
            stream.apply(*opt);
        }
        let server = self.insert(Endpoint {
            owner: None,
            local: to,
            opts,
            kind: Kind::Stream(Box::new(stream)),
        });
        if let Some(Kind::Listener(l)) = self.endpoints.get_mut(&listener).map(|e| &mut e.kind) {
            l.backlog.push_back(server);
        }
        self.transmit(
            to.ip(),
            client_addr.ip(),
            0,
            Ev::SynAck { client, server },
            false,
        );
        self.drive_accept(listener);
    }

    fn on_synack(&mut self, client: u64, server: u64) {
        if !self.is_connecting(client) {
            // The client gave up (timeout, close): the server side learns by a reset.
            self.fail(server, Fail::Reset);
            return;
        }
        let Some(ep) = self.endpoints.get_mut(&client) else {
            return;
        };
        let owner = ep.owner;
        let Some(st) = ep.stream() else { return };
        st.state = State::Established;
        st.peer = Some(server);
        let token = st.connect.take();
        if let (Some((r, sid)), Some(token)) = (owner, token) {
            self.emit(
                r,
                Completion {
                    token,
                    event: Event::Connected {
                        socket: sid,
                        result: Ok(()),
                    },
                },
            );
        }
        self.pump(client);
        self.drive_recv(client);
    }

    /// A receive deadline passed: fails the receive if it is still the active one (a
    /// paused socket's receive is not active: its clock starts over on resume).
    fn on_recv_timeout(&mut self, ep: u64, timer: u64) {
        let Some(e) = self.endpoints.get_mut(&ep) else {
            return;
        };
        let owner = e.owner;
        let Some((_, sid)) = owner else { return };
        let Some(st) = e.stream() else { return };
        if st.recvs.front().and_then(|r| r.timer) != Some(timer) {
            return;
        }
        if st.paused {
            if let Some(head) = st.recvs.front_mut() {
                head.timer = None;
            }
            return;
        }
        let Some(r) = st.recvs.pop_front() else {
            return;
        };
        let c = recv_done(sid, r.token, r.buf, Err(Error::TimedOut));
        self.emit_all(owner, vec![c]);
        // The next receive becomes active: its clock starts.
        self.drive_recv(ep);
    }

    fn on_connect_failed(&mut self, client: u64, fail: Fail) {
        if self.is_connecting(client) {
            self.fail(client, fail);
        }
    }

    fn on_segment(&mut self, from: u64, to: u64, seq: u64, data: Bytes, fin: bool) {
        let Some(ep) = self.endpoints.get_mut(&to) else {
            if !data.is_empty() {
                // Data for a socket that no longer exists: the sender is reset.
                self.fail(from, Fail::Reset);
            }
            return;
        };
        let Some(st) = ep.stream() else { return };
        match st.state {
            State::Failed(_) => return,
            State::Closing if !data.is_empty() => {
                self.fail(from, Fail::Reset);
                self.endpoints.remove(&to);
                return;
            }
            _ => {}
        }
        if fin {
            st.fin_at = Some(seq);
        }
        if !data.is_empty() {
            if seq == st.rcv_nxt {
                st.rcv_nxt += data.len() as u64;
                st.rbuf_len += data.len();
                st.rbuf.push_back(data);
                while let Some(next) = st.ooo.remove(&st.rcv_nxt) {
                    st.rcv_nxt += next.len() as u64;
                    st.rbuf_len += next.len();
                    st.rbuf.push_back(next);
                }
            } else if seq > st.rcv_nxt {
                st.ooo.entry(seq).or_insert(data);
            }
            // seq < rcv_nxt: a duplicate of delivered data, dropped.
        }
        self.drive_recv(to);
    }

    /// Ends a connection abnormally: every queued operation fails; a closed (flushing)
    /// endpoint is removed.
    fn fail(&mut self, key: u64, fail: Fail) {
        let Some(ep) = self.endpoints.get_mut(&key) else {
            return;
        };
        let owner = ep.owner;
        let Some(st) = ep.stream() else { return };
        if matches!(st.state, State::Failed(_)) {
            return;
        }
        let closing = st.state == State::Closing;
        st.state = State::Failed(fail);
        let mut out = Vec::new();
        let sid = owner.map(|o| o.1).unwrap_or(SocketId {
            index: u32::MAX,
            generation: 0,
        });
        st.fail_ops(sid, fail, &mut out);
        if closing {
            self.endpoints.remove(&key);
        }
        self.emit_all(owner, out);
    }

    // ----- driving sockets --------------------------------------------------------------

    fn emit(&mut self, reactor: u32, c: Completion) {
        if let Some(r) = self.reactors.get_mut(&reactor) {
            r.ready.push(c);
        }
    }

    fn emit_all(&mut self, owner: Option<(u32, SocketId)>, out: Vec<Completion>) {
        if let (Some((r, _)), false) = (owner, out.is_empty()) {
            if let Some(r) = self.reactors.get_mut(&r) {
                r.ready.extend(out);
            }
        }
    }

    fn insert(&mut self, ep: Endpoint) -> u64 {
        let key = self.next_ep;
        self.next_ep += 1;
        self.endpoints.insert(key, ep);
        key
    }

    /// Hands backlog connections to a pending multishot accept.
    fn drive_accept(&mut self, listener: u64) {
        loop {
            let Some(ep) = self.endpoints.get_mut(&listener) else {
                return;
            };
            let Some((r, lsid)) = ep.owner else { return };
            let Kind::Listener(l) = &mut ep.kind else {
                return;
            };
            let Some(token) = l.accept else { return };
            if l.accept_delayed || l.backlog.is_empty() {
                return;
            }
            if self.buggify(DELAYED_ACCEPT) {
                // The connection waits in the backlog a little, as behind a busy kernel.
                let delay = 1 + self.rng.upto(1_000_000);
                if let Some(Kind::Listener(l)) =
                    self.endpoints.get_mut(&listener).map(|e| &mut e.kind)
                {
                    l.accept_delayed = true;
                }
                let at = self.now.saturating_add(delay);
                self.schedule(at, None, Ev::Accept { listener });
                return;
            }
            let Some(Kind::Listener(l)) = self.endpoints.get_mut(&listener).map(|e| &mut e.kind)
            else {
                return;
            };
            let Some(server) = l.backlog.pop_front() else {
                return;
            };
            let Some(rs) = self.reactors.get_mut(&r) else {
                return;
            };
            let sid = rs.sockets.insert(server);
            if let Some(sep) = self.endpoints.get_mut(&server) {
                sep.owner = Some((r, sid));
            }
            self.emit(
                r,
                Completion {
                    token,
                    event: Event::Accepted {
                        listener: lsid,
                        result: Ok(sid),
                        more: true,
                    },
                },
            );
            // Data may have arrived before the accept.
            self.drive_recv(server);
        }
    }

    /// Completes the receives the buffered data (or end of stream, or a failure) allows:
    /// plain receives in order, or the multishot receive's chunks; then starts the deadline
    /// of the receive left waiting, if it has one.
    fn drive_recv(&mut self, key: u64) {
        let now = self.now;
        let rate = match self.endpoints.get_mut(&key) {
            Some(ep) => {
                let local = ep.local.ip();
                match ep.stream() {
                    Some(st) => {
                        let peer_ip = st.peer_addr.ip();
                        self.link(peer_ip, local).reader_rate.filter(|&r| r > 0)
                    }
                    None => return,
                }
            }
            None => return,
        };
        let mut out = Vec::new();
        let mut read_any = false;
        let mut wake_at = None;
        loop {
            let Some(ep) = self.endpoints.get_mut(&key) else {
                return;
            };
            let Some((_, sid)) = ep.owner else { return };
            let Some(st) = ep.stream() else { return };
            match st.state {
                State::Connecting | State::Closing => break,
                State::Failed(fail) => {
                    for r in st.recvs.drain(..) {
                        out.push(recv_done(sid, r.token, r.buf, Err(fail.error())));
                    }
                    if let Some(token) = st.multi.take() {
                        out.push(multi_done(sid, token, Err(fail.error())));
                    }
                    break;
                }
                State::Established => {}
            }
            if st.paused || (st.recvs.is_empty() && st.multi.is_none()) {
                break;
            }
            if st.rbuf_len == 0 {
                if st.read_shut || st.fin_at == Some(st.rcv_nxt) {
                    if let Some(token) = st.multi.take() {
                        out.push(multi_done(sid, token, Ok(Bytes::new())));
                    } else if let Some(r) = st.recvs.pop_front() {
                        out.push(recv_done(sid, r.token, r.buf, Ok(0)));
                    }
                    continue;
                }
                break;
            }
            if rate.is_some() && st.drain_at > now {
                wake_at = Some(st.drain_at);
                break;
            }
            // How much this read may take: what the buffer has room for (a multishot chunk
            // is at most what the front segment holds, handed up without a copy) ...
            let mut n = match st.recvs.front_mut() {
                Some(r) if st.multi.is_none() => {
                    ensure_spare(&mut r.buf);
                    (r.buf.capacity() - r.buf.len()).min(st.rbuf_len)
                }
                _ => st.rbuf.front().map_or(0, Bytes::len),
            };
            if let Some(rate) = rate {
                // ... at most 10 ms worth of a slow reader's rate ...
                n = n.min(usize::try_from(rate / 100).unwrap_or(usize::MAX).max(1));
            }
            // ... and, at a fault point, fewer bytes than are there, as a kernel may return.
            if n > 1 && self.buggify(SHORT_READ) {
                n = 1 + self.rng.upto(n as u64 - 2) as usize;
            }
            let Some(st) = self.endpoints.get_mut(&key).and_then(Endpoint::stream) else {
                return;
            };
            if let Some(rate) = rate {
                let cost = (n as u128 * 1_000_000_000 / u128::from(rate)) as u64;
                st.drain_at = now.saturating_add(cost);
            }
            if let Some(token) = st.multi {
                let chunk = match st.rbuf.front_mut() {
                    Some(front) if n < front.len() => front.split_to(n),
                    _ => st.rbuf.pop_front().unwrap_or_default(),
                };
                st.rbuf_len -= chunk.len();
                st.rcv_read += chunk.len() as u64;
                read_any = true;
                out.push(Completion {
                    token,
                    event: Event::ReceivedBytes {
                        socket: sid,
                        result: Ok(chunk),
                        more: true,
                    },
                });
                continue;
            }
            let Some(mut r) = st.recvs.pop_front() else {
                break;
            };
            let mut left = n;
            while left > 0 {
                let Some(front) = st.rbuf.front_mut() else {
                    break;
                };
                let take = left.min(front.len());
                r.buf.extend_from_slice(&front[..take]);
                front.advance(take);
                if front.is_empty() {
                    st.rbuf.pop_front();
                }
                left -= take;
            }
            st.rbuf_len -= n;
            st.rcv_read += n as u64;
            read_any = true;
            out.push(recv_done(sid, r.token, r.buf, Ok(n)));
        }
        let Some(ep) = self.endpoints.get_mut(&key) else {
            return;
        };
        let owner = ep.owner;
        let Some(st) = ep.stream() else { return };
        let peer = st.peer;
        let mut arm = None;
        if !st.paused && st.state == State::Established {
            if let Some(head) = st.recvs.front_mut() {
                if let (Some(after), None) = (head.timeout, head.timer) {
                    let id = self.next_timer;
                    self.next_timer += 1;
                    head.timer = Some(id);
                    arm = Some((now.saturating_add(ns(after)), id));
                }
            }
        }
        let mut wake = None;
        if let Some(at) = wake_at {
            if !st.wake_pending {
                st.wake_pending = true;
                wake = Some(at);
            }
        }
        if let Some((at, timer)) = arm {
            self.schedule(at, None, Ev::RecvTimeout { ep: key, timer });
        }
        if let Some(at) = wake {
            self.schedule(at, None, Ev::Wake { ep: key });
        }
        self.emit_all(owner, out);
        if read_any {
            // The receive window opened: the peer may send more.
            if let Some(p) = peer {
                self.pump(p);
            }
        }
    }

    /// Moves queued sends into the send buffer and transmits what the peer's window allows,
    /// then the FIN once everything is out.
    fn pump(&mut self, key: u64) {
        let mss = self.config.mss.max(1);
        let (peer, snd_nxt) = match self.endpoints.get_mut(&key).and_then(Endpoint::stream) {
            Some(st) if matches!(st.state, State::Established | State::Closing) => {
                (st.peer, st.snd_nxt)
            }
            _ => return,
        };
        let mut room = match peer.and_then(|p| self.endpoints.get_mut(&p)?.stream()) {
            Some(ps) => ps
                .recv_buffer
                .saturating_sub(snd_nxt.saturating_sub(ps.rcv_read) as usize),
            // The peer is gone: one segment finds out (it is answered by a reset).
            None => mss,
        };
        // A fault point: the send buffer takes only part of the next send now, the rest a
        // moment later (as a kernel's partial write, continued by the backend).
        let mut partial = self.buggify(PARTIAL_WRITE).then(|| self.rng.next_u64());
        let mut hold = false;
        let Some(ep) = self.endpoints.get_mut(&key) else {
            return;
        };
        let owner = ep.owner;
        let sid = owner.map(|o| o.1).unwrap_or(SocketId {
            index: u32::MAX,
            generation: 0,
        });
        let src = ep.local.ip();
        let Some(st) = ep.stream() else { return };
        let dst = st.peer_addr.ip();
        let mut out = Vec::new();
        let mut segs = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(op) = st.writes.front_mut() {
                if let WriteOp::Shutdown { how, .. } = op {
                    if matches!(how, Shutdown::Write | Shutdown::Both) {
                        st.fin_pending = true;
                        st.write_shut = true;
                    }
                    if matches!(how, Shutdown::Read | Shutdown::Both) {
                        st.read_shut = true;
                    }
                } else if st.write_shut {
                    if let Some(op) = st.writes.pop_front() {
                        out.push(op.complete(sid, Err(Error::BrokenPipe)));
                    }
                    continue;
                } else if !op.is_done() {
                    let mut free = st.send_buffer.saturating_sub(st.unsent_len);
                    if free == 0 || hold {
                        break;
                    }
                    if let Some(cut) = partial.take() {
                        if free > 1 {
                            free = 1 + (cut % (free as u64 - 1)) as usize;
                            hold = true;
                        }
                    }
                    if let Some(chunk) = op.next_chunk(free) {
                        op.advance(chunk.len());
                        st.unsent_len += chunk.len();
                        st.unsent.push_back(chunk);
                        progressed = true;
                    }
                    if !op.is_done() {
                        continue;
                    }
                }
                if let Some(op) = st.writes.pop_front() {
                    out.extend(op.finish(sid, Ok(())));
                }
                progressed = true;
            }
            while st.unsent_len > 0 && room > 0 {
                let Some(front) = st.unsent.front_mut() else {
                    break;
                };
                let n = mss.min(room).min(front.len());
                let data = if n == front.len() {
                    st.unsent.pop_front().unwrap_or_default()
                } else {
                    front.split_to(n)
                };
                segs.push((st.snd_nxt, data, false));
                st.snd_nxt += n as u64;
                st.unsent_len -= n;
                room -= n;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if st.fin_pending && !st.fin_sent && st.unsent_len == 0 {
            st.fin_sent = true;
            segs.push((st.snd_nxt, Bytes::new(), true));
        }
        let flushed = st.state == State::Closing && st.fin_sent;
        if let Some((r, sid)) = owner {
            self.emit_all(owner, out);
            if let Some(rs) = self.reactors.get_mut(&r) {
                rs.write_dirty.push(sid);
            }
        }
        if let Some(to) = peer {
            for (seq, data, fin) in segs {
                let len = data.len();
                let ev = Ev::Segment {
                    from: key,
                    to,
                    seq,
                    data,
                    fin,
                };
                self.transmit(src, dst, len, ev, !fin);
            }
        }
        if flushed {
            self.endpoints.remove(&key);
        }
        if hold {
            let at = self.now.saturating_add(1 + self.rng.upto(100_000));
            self.schedule(at, None, Ev::Pump { ep: key });
        }
    }
}
