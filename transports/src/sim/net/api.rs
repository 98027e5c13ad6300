//! The reactor-facing half of [`NetState`]: what a simulated reactor's operations do to the
//! network (listen, accept, connect, recv, send, close, options, backpressure).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;

use super::{
    ns, opt_name, recv_done, Endpoint, Ev, Fail, Kind, Listener, NetState, ReactorState, Recv,
    State, Stream, EPHEMERAL,
};
use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::{Error, Result};
use crate::options::{SockOpt, SockOptName};
use crate::slab::Slab;
use crate::write::WriteOp;

impl NetState {
    pub(crate) fn add_reactor(&mut self, host: IpAddr) -> u32 {
        let id = self.next_reactor;
        self.next_reactor += 1;
        self.reactors.insert(
            id,
            ReactorState {
                host,
                sockets: Slab::new(),
                ready: Vec::new(),
                write_dirty: Vec::new(),
            },
        );
        id
    }

    /// Closes every socket of a dropped reactor (peers see FIN or RST as usual).
    pub(crate) fn remove_reactor(&mut self, r: u32) {
        let ids = self
            .reactors
            .get(&r)
            .map(|rs| rs.sockets.ids())
            .unwrap_or_default();
        for sid in ids {
            self.close(r, sid, Token(0));
        }
        self.reactors.remove(&r);
    }

    /// Queues a completion for reactor `r` (errors found at submit time).
    pub(crate) fn push_completion(&mut self, r: u32, c: Completion) {
        self.emit(r, c);
    }

    pub(crate) fn take_write_dirty(&mut self, r: u32, out: &mut Vec<SocketId>) {
        if let Some(rs) = self.reactors.get_mut(&r) {
            out.append(&mut rs.write_dirty);
        }
    }

    pub(crate) fn take_ready(&mut self, r: u32, out: &mut Vec<Completion>) {
        if let Some(rs) = self.reactors.get_mut(&r) {
            out.append(&mut rs.ready);
        }
    }

    pub(crate) fn has_ready(&self, r: u32) -> bool {
        self.reactors.get(&r).is_some_and(|rs| !rs.ready.is_empty())
    }

    pub(crate) fn socket_count(&self, r: u32) -> usize {
        self.reactors.get(&r).map_or(0, |rs| rs.sockets.len())
    }

    fn key(&self, r: u32, sid: SocketId) -> Option<u64> {
        self.reactors.get(&r)?.sockets.get(sid).copied()
    }

    fn host(&self, r: u32) -> Result<IpAddr> {
        self.reactors
            .get(&r)
            .map(|rs| rs.host)
            .ok_or(Error::InvalidSocket)
    }

    /// Maps unspecified and loopback addresses to the reactor's host.
    fn own_ip(&self, r: u32, ip: IpAddr) -> Result<IpAddr> {
        let host = self.host(r)?;
        if ip.is_unspecified() || ip.is_loopback() || ip == host {
            Ok(host)
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::AddrNotAvailable).into())
        }
    }

    fn ephemeral(&mut self, ip: IpAddr) -> u16 {
        loop {
            let next = self.ports.entry(ip).or_insert(EPHEMERAL);
            let port = *next;
            *next = if port == u16::MAX {
                EPHEMERAL
            } else {
                port + 1
            };
            if !self.listeners.contains_key(&SocketAddr::new(ip, port)) {
                return port;
            }
        }
    }

    pub(crate) fn listen(
        &mut self,
        r: u32,
        addr: SocketAddr,
        opts: &[SockOpt],
    ) -> Result<SocketId> {
        let ip = self.own_ip(r, addr.ip())?;
        let port = if addr.port() == 0 {
            self.ephemeral(ip)
        } else {
            addr.port()
        };
        let local = SocketAddr::new(ip, port);
        if self.listeners.contains_key(&local) {
            return Err(Error::AddrInUse);
        }
        let key = self.insert(Endpoint {
            owner: None,
            local,
            opts: opts.to_vec(),
            kind: Kind::Listener(Listener {
                backlog: VecDeque::new(),
                accept: None,
                accept_delayed: false,
            }),
        });
        self.listeners.insert(local, key);
        let rs = self.reactors.get_mut(&r).ok_or(Error::InvalidSocket)?;
        let sid = rs.sockets.insert(key);
        if let Some(ep) = self.endpoints.get_mut(&key) {
            ep.owner = Some((r, sid));
        }
        Ok(sid)
    }

    pub(crate) fn accept(&mut self, r: u32, sid: SocketId, token: Token) {
        let err = match self
            .key(r, sid)
            .and_then(|k| Some((k, self.endpoints.get_mut(&k)?)))
        {
            Some((key, ep)) => match &mut ep.kind {
                Kind::Listener(l) if l.accept.is_none() => {
                    l.accept = Some(token);
                    self.drive_accept(key);
                    return;
                }
                _ => Error::Unsupported("accept needs a listener without an accept in flight"),
            },
            None => Error::InvalidSocket,
        };
        let event = Event::Accepted {
            listener: sid,
            result: Err(err),
            more: false,
        };
        self.emit(r, Completion { token, event });
    }

    pub(crate) fn connect(
        &mut self,
        r: u32,
        addr: SocketAddr,
        opts: &[SockOpt],
        timeout: Option<Duration>,
        token: Token,
    ) -> Result<SocketId> {
        let host = self.host(r)?;
        let to = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            SocketAddr::new(host, addr.port())
        } else {
            addr
        };
        let local = SocketAddr::new(host, self.ephemeral(host));
        let mut stream = Stream::new(State::Connecting, None, to, &self.config);
        for opt in opts {
            stream.apply(*opt);
        }
        stream.connect = Some(token);
        let key = self.insert(Endpoint {
            owner: None,
            local,
            opts: opts.to_vec(),
            kind: Kind::Stream(Box::new(stream)),
        });
        let rs = self.reactors.get_mut(&r).ok_or(Error::InvalidSocket)?;
        let sid = rs.sockets.insert(key);
        if let Some(ep) = self.endpoints.get_mut(&key) {
            ep.owner = Some((r, sid));
        }
        self.transmit(host, to.ip(), 0, Ev::Syn { client: key, to }, false);
        let limit = timeout.map_or(self.config.connect_timeout, |t| {
            t.min(self.config.connect_timeout)
        });
        let deadline = self.now.saturating_add(ns(limit));
        self.schedule(deadline, None, Ev::ConnectTimeout { client: key });
        Ok(sid)
    }

    /// Queues a receive (with an optional deadline, counted from when it becomes the
    /// socket's active receive).
    pub(crate) fn recv(
        &mut self,
        r: u32,
        sid: SocketId,
        buf: BytesMut,
        timeout: Option<Duration>,
        token: Token,
    ) {
        let key = self.key(r, sid);
        match key.and_then(|k| self.endpoints.get_mut(&k)?.stream()) {
            Some(st) if st.multi.is_none() => {
                st.recvs.push_back(Recv {
                    token,
                    buf,
                    timeout,
                    timer: None,
                });
                if let Some(k) = key {
                    self.drive_recv(k);
                }
            }
            other => {
                let err = match (other, key) {
                    (Some(_), _) => Error::Unsupported("recv on a socket with a multishot receive"),
                    (None, Some(_)) => Error::Unsupported("recv on a listener"),
                    (None, None) => Error::InvalidSocket,
                };
                self.emit(r, recv_done(sid, token, buf, Err(err)));
            }
        }
    }

    /// Starts a multishot receive: the buffered data's segments are handed up as they are
    /// (no copy), in order, then end of stream or the failure.
    pub(crate) fn recv_multishot(&mut self, r: u32, sid: SocketId, token: Token) -> Result<()> {
        let (key, st) = self.stream_mut(r, sid)?;
        if st.multi.is_some() || !st.recvs.is_empty() {
            return Err(Error::Unsupported(
                "recv_multishot on a socket with receives outstanding",
            ));
        }
        st.multi = Some(token);
        self.drive_recv(key);
        Ok(())
    }

    /// Ends the multishot receive; data arriving later stays buffered for the next receive.
    pub(crate) fn cancel_recv_multishot(&mut self, r: u32, sid: SocketId) -> Result<()> {
        let (_, st) = self.stream_mut(r, sid)?;
        let token = st.multi.take().ok_or(Error::InvalidArgument(
            "no multishot receive on this socket",
        ))?;
        self.emit(
            r,
            Completion {
                token,
                event: Event::ReceivedBytes {
                    socket: sid,
                    result: Err(Error::Cancelled),
                    more: false,
                },
            },
        );
        Ok(())
    }

    pub(crate) fn write(&mut self, r: u32, sid: SocketId, op: WriteOp) {
        let key = self.key(r, sid);
        match key.and_then(|k| self.endpoints.get_mut(&k)?.stream()) {
            Some(st) if matches!(st.state, State::Failed(_)) => {
                self.emit(r, op.complete(sid, Err(Error::BrokenPipe)));
            }
            Some(st) => {
                st.writes.push_back(op);
                if let Some(k) = key {
                    self.pump(k);
                }
            }
            None => {
                let err = if key.is_some() {
                    Error::Unsupported("send on a listener")
                } else {
                    Error::InvalidSocket
                };
                self.emit(r, op.complete(sid, Err(err)));
            }
        }
    }

    pub(crate) fn close(&mut self, r: u32, sid: SocketId, token: Token) {
        let key = self
            .reactors
            .get_mut(&r)
            .and_then(|rs| rs.sockets.remove(sid));
        if let Some(key) = key {
            self.close_endpoint(r, sid, key);
        }
        self.emit(
            r,
            Completion {
                token,
                event: Event::Closed { socket: sid },
            },
        );
    }

    fn close_endpoint(&mut self, r: u32, sid: SocketId, key: u64) {
        enum Then {
            DropBacklog(Vec<u64>),
            Flush,
            Abort,
            Remove,
        }
        let Some(ep) = self.endpoints.get_mut(&key) else {
            return;
        };
        ep.owner = None;
        let local = ep.local;
        let mut out = Vec::new();
        let then = match &mut ep.kind {
            Kind::Listener(l) => {
                if let Some(token) = l.accept.take() {
                    out.push(Completion {
                        token,
                        event: Event::Accepted {
                            listener: sid,
                            result: Err(Error::Cancelled),
                            more: false,
                        },
                    });
                }
                Then::DropBacklog(l.backlog.drain(..).collect())
            }
            Kind::Stream(st) => {
                if let Some(token) = st.connect.take() {
                    out.push(Completion {
                        token,
                        event: Event::Connected {
                            socket: sid,
                            result: Err(Error::Cancelled),
                        },
                    });
                }
                for r in st.recvs.drain(..) {
                    out.push(recv_done(sid, r.token, r.buf, Err(Error::Cancelled)));
                }
                if let Some(token) = st.multi.take() {
                    out.push(Completion {
                        token,
                        event: Event::ReceivedBytes {
                            socket: sid,
                            result: Err(Error::Cancelled),
                            more: false,
                        },
                    });
                }
                for op in st.writes.drain(..) {
                    out.push(op.cancel(sid));
                }
                match st.state {
                    State::Established if !st.linger_zero && st.rbuf_len == 0 => {
                        // Graceful: flush what was accepted, then FIN.
                        st.state = State::Closing;
                        st.fin_pending = true;
                        Then::Flush
                    }
                    // Linger 0 or unread data: reset the peer, like TCP.
                    State::Established => Then::Abort,
                    _ => Then::Remove,
                }
            }
        };
        match then {
            Then::DropBacklog(backlog) => {
                self.endpoints.remove(&key);
                self.listeners.remove(&local);
                for server in backlog {
                    self.abort(server);
                }
            }
            Then::Flush => self.pump(key),
            Then::Abort => self.abort(key),
            Then::Remove => {
                self.endpoints.remove(&key);
            }
        }
        self.emit_all(Some((r, sid)), out);
    }

    /// Removes an endpoint and sends its peer a reset.
    fn abort(&mut self, key: u64) {
        let Some(mut ep) = self.endpoints.remove(&key) else {
            return;
        };
        let src = ep.local.ip();
        if let Some(st) = ep.stream() {
            if let Some(peer) = st.peer {
                let dst = st.peer_addr.ip();
                self.transmit(src, dst, 0, Ev::Rst { to: peer }, false);
            }
        }
    }

    /// Resets every connection with an end on `host`, at once on both ends; returns how many
    /// sockets were reset.
    pub(crate) fn reset_host(&mut self, host: IpAddr) -> usize {
        self.reset_where(|local, peer| local == host || peer == host)
    }

    /// Resets every connection between hosts `a` and `b` (either way), at once on both ends;
    /// returns how many sockets were reset.
    pub(crate) fn reset_between(&mut self, a: IpAddr, b: IpAddr) -> usize {
        self.reset_where(|local, peer| (local, peer) == (a, b) || (local, peer) == (b, a))
    }

    /// Resets the live connection ends whose (local host, peer host) match.
    fn reset_where(&mut self, matches: impl Fn(IpAddr, IpAddr) -> bool) -> usize {
        let keys: Vec<u64> = self
            .endpoints
            .iter_mut()
            .filter_map(|(&k, ep)| {
                let local = ep.local.ip();
                let st = ep.stream()?;
                let live = matches!(
                    st.state,
                    State::Connecting | State::Established | State::Closing
                );
                (live && matches(local, st.peer_addr.ip())).then_some(k)
            })
            .collect();
        for &k in &keys {
            self.fail(k, Fail::Reset);
        }
        keys.len()
    }

    fn stream_mut(&mut self, r: u32, sid: SocketId) -> Result<(u64, &mut Stream)> {
        let key = self.key(r, sid).ok_or(Error::InvalidSocket)?;
        let st = self
            .endpoints
            .get_mut(&key)
            .and_then(Endpoint::stream)
            .ok_or(Error::Unsupported("not a connection"))?;
        Ok((key, st))
    }

    pub(crate) fn pause_recv(&mut self, r: u32, sid: SocketId) -> Result<()> {
        self.stream_mut(r, sid)?.1.paused = true;
        Ok(())
    }

    pub(crate) fn resume_recv(&mut self, r: u32, sid: SocketId) -> Result<()> {
        let (key, st) = self.stream_mut(r, sid)?;
        st.paused = false;
        self.drive_recv(key);
        Ok(())
    }

    /// Bytes accepted by sends and not yet transmitted.
    pub(crate) fn send_queued(&mut self, r: u32, sid: SocketId) -> Result<usize> {
        let (_, st) = self.stream_mut(r, sid)?;
        Ok(crate::write::queued_bytes(&st.writes) + st.unsent_len)
    }

    pub(crate) fn set_option(&mut self, r: u32, sid: SocketId, opt: SockOpt) -> Result<()> {
        let key = self.key(r, sid).ok_or(Error::InvalidSocket)?;
        let ep = self.endpoints.get_mut(&key).ok_or(Error::InvalidSocket)?;
        let name = opt_name(&opt);
        ep.opts.retain(|o| opt_name(o) != name);
        ep.opts.push(opt);
        if let Some(st) = ep.stream() {
            st.apply(opt);
        }
        Ok(())
    }

    pub(crate) fn option(&mut self, r: u32, sid: SocketId, name: SockOptName) -> Result<SockOpt> {
        let key = self.key(r, sid).ok_or(Error::InvalidSocket)?;
        let ep = self.endpoints.get_mut(&key).ok_or(Error::InvalidSocket)?;
        if let Some(opt) = ep.opts.iter().find(|o| opt_name(o) == Some(name)) {
            return Ok(*opt);
        }
        let (snd, rcv) = match ep.stream() {
            Some(st) => (st.send_buffer, st.recv_buffer),
            None => (self.config.send_buffer, self.config.recv_buffer),
        };
        match name {
            SockOptName::SendBuffer => Ok(SockOpt::SendBuffer(snd)),
            SockOptName::RecvBuffer => Ok(SockOpt::RecvBuffer(rcv)),
            SockOptName::Linger => Ok(SockOpt::Linger(None)),
            SockOptName::NoDelay => Ok(SockOpt::NoDelay(false)),
            _ => Err(Error::Unsupported(
                "option not modelled by the simulated network",
            )),
        }
    }

    pub(crate) fn local_addr(&self, r: u32, sid: SocketId) -> Result<SocketAddr> {
        let key = self.key(r, sid).ok_or(Error::InvalidSocket)?;
        self.endpoints
            .get(&key)
            .map(|e| e.local)
            .ok_or(Error::InvalidSocket)
    }

    pub(crate) fn peer_addr(&self, r: u32, sid: SocketId) -> Result<SocketAddr> {
        let key = self.key(r, sid).ok_or(Error::InvalidSocket)?;
        match self.endpoints.get(&key).map(|e| &e.kind) {
            Some(Kind::Stream(st)) if st.state == State::Established => Ok(st.peer_addr),
            Some(_) => Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into()),
            None => Err(Error::InvalidSocket),
        }
    }
}
