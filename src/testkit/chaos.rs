//! A fault-injecting TCP proxy for integration tests against real servers (redis-server,
//! PostgreSQL, nginx): put it between a client and a server and add latency, a bandwidth cap,
//! sliced writes, a blackhole, resets or slow closes, and change them while traffic flows.
//!
//! It is made of Sinew actors on Sinew's own transports: a listener actor and one pipe actor
//! per client connection, each pipe owning the client socket and its upstream connection, on a
//! small system of its own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_actors::{Actor, Context, System};
use sinew_io_actors::{io_driver, WorkerIo};
use sinew_transports::{Backend, Completion, Event, SockOpt, SocketId, Token};

/// The faults applied to every connection through the proxy. Change them at any time with
/// [`ChaosProxy::set`]; they apply to data that arrives afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Extra one-way delay for every chunk, in both directions (order is preserved).
    pub latency: Duration,
    /// Bandwidth cap per direction, in bytes per second.
    pub bandwidth: Option<u64>,
    /// Forward data in writes of at most this many bytes.
    pub slice: Option<usize>,
    /// Swallow all data (connections stay open, nothing arrives).
    pub blackhole: bool,
    /// Reset (RST) both sides of a connection as soon as it carries data.
    pub reset: bool,
    /// When one side closes, wait this long before closing the other.
    pub slow_close: Duration,
}

/// Why the proxy could not start.
#[derive(thiserror::Error, Debug)]
pub enum ChaosError {
    /// The proxy's own actor system failed to start.
    #[error("proxy system: {0}")]
    System(#[from] sinew_actors::SystemError),
    /// Spawning the listener failed.
    #[error("proxy listener: {0}")]
    Spawn(#[from] sinew_actors::SpawnError),
    /// The listener did not come up.
    #[error("proxy listener did not start")]
    Listen,
}

/// A running proxy. Dropping it stops it.
pub struct ChaosProxy {
    addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    system: Option<System>,
}

impl std::fmt::Debug for ChaosProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ChaosProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> Result<ChaosProxy, ChaosError> {
        let system = System::builder()
            .workers(1)
            .name("sinew-chaos")
            .try_driver(io_driver(Backend::Auto))
            .build()?;
        let faults = Arc::new(Mutex::new(faults));
        let (tx, rx) = mpsc::channel();
        system.spawn(Listener {
            upstream,
            faults: faults.clone(),
            ready: Some(tx),
        })?;
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| ChaosError::Listen)?;
        Ok(ChaosProxy {
            addr,
            faults,
            system: Some(system),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Changes the faults in place.
    pub fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.faults));
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        if let Some(s) = self.system.take() {
            s.shutdown(Duration::from_secs(2));
        }
    }
}

fn lock(m: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker_io(ctx: &Context<impl Actor>) -> Option<std::rc::Rc<WorkerIo>> {
    let io = ctx.extension::<WorkerIo>();
    if io.is_none() {
        tracing::error!("chaos proxy actor runs on a worker without I/O");
    }
    io
}

struct Listener {
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    ready: Option<mpsc::Sender<SocketAddr>>,
}

impl Actor for Listener {
    type Msg = Completion;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(io) = worker_io(ctx) else {
            return ctx.stop();
        };
        let token = io.register(ctx.addr().recipient());
        let listening = {
            let mut r = io.reactor();
            let any: SocketAddr = ([127, 0, 0, 1], 0).into();
            r.listen(any, &[SockOpt::ReuseAddr(true)]).and_then(|l| {
                r.accept(l, token);
                r.local_addr(l)
            })
        };
        match (listening, self.ready.take()) {
            (Ok(addr), Some(ready)) => {
                let _ = ready.send(addr);
            }
            (Err(e), _) => {
                tracing::error!(error = %e, "chaos proxy cannot listen");
                ctx.stop();
            }
            _ => {}
        }
    }

    fn handle(&mut self, c: Completion, ctx: &mut Context<Self>) {
        if let Event::Accepted {
            result: Ok(client), ..
        } = c.event
        {
            let pipe = Pipe::new(client, self.upstream, self.faults.clone());
            if let Err(e) = ctx.spawn(pipe) {
                tracing::warn!(error = %e, "chaos proxy: connection dropped");
            }
        }
    }
}

/// Which way data flows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Dir {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

enum PipeMsg {
    Io(Completion),
    Flush(Dir),
    HalfClose(Dir),
}

/// One proxied connection: the client socket, its upstream socket, and what is in flight.
struct Pipe {
    client: SocketId,
    upstream_addr: SocketAddr,
    upstream: Option<SocketId>,
    connected: bool,
    token: Option<Token>,
    faults: Arc<Mutex<Faults>>,
    /// Chunks waiting to be forwarded, with the instant they may leave.
    queues: [VecDeque<(Instant, Bytes)>; 2],
    /// Earliest instant the next chunk may leave (bandwidth pacing).
    next_send: [Instant; 2],
    /// End of stream seen in this direction.
    eof: [bool; 2],
    /// The slow-close delay after end of stream has passed: close the far side once drained.
    closing: [bool; 2],
    /// The far side was shut down for writing.
    shut: [bool; 2],
    open_sockets: u8,
}

impl Pipe {
    fn new(client: SocketId, upstream_addr: SocketAddr, faults: Arc<Mutex<Faults>>) -> Self {
        let now = Instant::now();
        Pipe {
            client,
            upstream_addr,
            upstream: None,
            connected: false,
            token: None,
            faults,
            queues: [VecDeque::new(), VecDeque::new()],
            next_send: [now, now],
            eof: [false, false],
            closing: [false, false],
            shut: [false, false],
            open_sockets: 1,
        }
    }

    fn idx(d: Dir) -> usize {
        match d {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }

    fn source(&self, d: Dir) -> Option<SocketId> {
        match d {
            Dir::Up => Some(self.client),
            Dir::Down => self.upstream,
        }
    }

    fn target(&self, d: Dir) -> Option<SocketId> {
        match d {
            Dir::Up => self.upstream.filter(|_| self.connected),
            Dir::Down => Some(self.client),
        }
    }

    fn recv(&self, io: &WorkerIo, d: Dir) {
        if let (Some(s), Some(t)) = (self.source(d), self.token) {
            io.reactor().recv(s, BytesMut::with_capacity(16 * 1024), t);
        }
    }

    fn close_all(&mut self, io: &WorkerIo, reset: bool) {
        let Some(t) = self.token else { return };
        let mut r = io.reactor();
        for s in [Some(self.client), self.upstream].into_iter().flatten() {
            if reset {
                // SO_LINGER 0: close sends RST instead of FIN.
                let _ = r.set_option(s, SockOpt::Linger(Some(Duration::ZERO)));
            }
            r.close(s, t);
        }
    }

    fn on_data(&mut self, d: Dir, buf: BytesMut, io: &WorkerIo, ctx: &mut Context<Self>) {
        let f = lock(&self.faults).clone();
        if f.reset {
            self.close_all(io, true);
            return;
        }
        if !f.blackhole {
            let due = Instant::now() + f.latency;
            let data = buf.freeze();
            let slice = f.slice.unwrap_or(usize::MAX).max(1);
            let mut off = 0;
            while off < data.len() {
                let end = (off + slice).min(data.len());
                self.queues[Self::idx(d)].push_back((due, data.slice(off..end)));
                off = end;
            }
            self.flush(d, io, ctx);
        }
        self.recv(io, d);
    }

    /// Sends every chunk that is due (and allowed by the bandwidth cap); schedules the rest.
    fn flush(&mut self, d: Dir, io: &WorkerIo, ctx: &mut Context<Self>) {
        let (Some(target), Some(token)) = (self.target(d), self.token) else {
            return;
        };
        let bandwidth = lock(&self.faults).bandwidth;
        let i = Self::idx(d);
        let now = Instant::now();
        while let Some((due, _)) = self.queues[i].front() {
            let ready_at = (*due).max(self.next_send[i]);
            if ready_at > now {
                ctx.send_after(ready_at - now, PipeMsg::Flush(d));
                return;
            }
            let Some((_, chunk)) = self.queues[i].pop_front() else {
                break;
            };
            if let Some(bw) = bandwidth {
                let cost = Duration::from_secs_f64(chunk.len() as f64 / bw.max(1) as f64);
                self.next_send[i] = now.max(self.next_send[i]) + cost;
            }
            io.reactor().send(target, chunk, token);
        }
        if self.closing[i] {
            self.half_close(d, io);
        }
    }

    fn half_close(&mut self, d: Dir, io: &WorkerIo) {
        let i = Self::idx(d);
        if self.shut[i] || !self.queues[i].is_empty() {
            return;
        }
        if let (Some(target), Some(token)) = (self.target(d), self.token) {
            self.shut[i] = true;
            io.reactor()
                .shutdown(target, std::net::Shutdown::Write, token);
        }
    }
}

impl Actor for Pipe {
    type Msg = PipeMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(io) = worker_io(ctx) else {
            return ctx.stop();
        };
        let token = io.register(ctx.addr().recipient_map(PipeMsg::Io));
        self.token = Some(token);
        let connected = io
            .reactor()
            .connect(self.upstream_addr, &[SockOpt::NoDelay(true)], token);
        match connected {
            Ok(s) => {
                self.upstream = Some(s);
                self.open_sockets = 2;
            }
            Err(e) => {
                tracing::warn!(error = %e, "chaos proxy: upstream unreachable");
                self.close_all(&io, false);
                return;
            }
        }
        let _ = io.reactor().set_option(self.client, SockOpt::NoDelay(true));
        self.recv(&io, Dir::Up);
    }

    fn handle(&mut self, msg: PipeMsg, ctx: &mut Context<Self>) {
        let Some(io) = worker_io(ctx) else {
            return ctx.stop();
        };
        match msg {
            PipeMsg::Io(c) => match c.event {
                Event::Connected { result: Ok(()), .. } => {
                    self.connected = true;
                    self.recv(&io, Dir::Down);
                    self.flush(Dir::Up, &io, ctx);
                }
                Event::Received {
                    socket,
                    buf,
                    result: Ok(n),
                } => {
                    let d = if socket == self.client {
                        Dir::Up
                    } else {
                        Dir::Down
                    };
                    if n == 0 {
                        self.eof[Self::idx(d)] = true;
                        let delay = lock(&self.faults).slow_close;
                        ctx.send_after(delay, PipeMsg::HalfClose(d));
                    } else {
                        self.on_data(d, buf, &io, ctx);
                    }
                }
                Event::Sent { result: Ok(_), .. } | Event::Shutdown { .. } => {
                    if self.shut == [true, true] {
                        self.close_all(&io, false);
                    }
                }
                Event::Closed { .. } => {
                    self.open_sockets = self.open_sockets.saturating_sub(1);
                    if self.open_sockets == 0 {
                        ctx.stop();
                    }
                }
                // Connect failure, reset, broken pipe: tear the pair down.
                _ => self.close_all(&io, false),
            },
            PipeMsg::Flush(d) => self.flush(d, &io, ctx),
            PipeMsg::HalfClose(d) => {
                // If data is still queued, `flush` closes once it has drained.
                self.closing[Self::idx(d)] = true;
                self.half_close(d, &io);
            }
        }
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) {
        if let (Some(io), Some(t)) = (ctx.extension::<WorkerIo>(), self.token.take()) {
            io.unregister(t);
        }
    }
}
