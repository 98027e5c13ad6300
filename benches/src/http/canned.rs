//! The canned-response io_uring server: the practical upper bound of the suite.
//!
//! One thread, one ring (`SINGLE_ISSUER | DEFER_TASKRUN` when the kernel has them), a
//! multishot accept, and per connection a multishot receive that picks buffers from a
//! provided buffer ring. It does not parse HTTP: it counts requests by their `\r\n\r\n`
//! (a state machine that carries partial matches across reads) and answers each with a
//! fixed response, appended to the connection's output and sent with one `send` at a time
//! (responses produced while a send is in flight wait and go out together). The response
//! kind (plaintext or JSON) is chosen per connection by the path of its first request, which
//! is all wrk needs. No allocation per request in the steady state: output buffers are
//! reused.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Response to `/plaintext`.
const PLAINTEXT: &[u8] = b"HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nHello, World!";

/// Response to `/json`.
const JSON: &[u8] = b"HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Type: application/json\r\n\
Content-Length: 27\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n{\"message\":\"Hello, World!\"}";

/// Submission queue entries.
const RING_ENTRIES: u32 = 1024;
/// Provided buffers (a power of two).
const BUFS: u16 = 512;
/// Size of each provided buffer.
const BUF_SIZE: usize = 4096;
/// Buffer group id of the provided buffer ring.
const BGID: u16 = 0;

/// `user_data` of the multishot accept.
const UD_ACCEPT: u64 = u64::MAX;
/// Operation tags in the low bit of a connection's `user_data` (`fd << 1 | op`).
const OP_RECV: u64 = 0;
/// See [`OP_RECV`].
const OP_SEND: u64 = 1;

/// The pattern that ends a request head (requests have no body here).
const END: &[u8; 4] = b"\r\n\r\n";

/// Counts complete `\r\n\r\n` occurrences in `data`, starting in partial-match `state`
/// (0..=3 bytes of the pattern matched) and leaving the state for the next read.
fn count_requests(state: &mut u8, data: &[u8]) -> usize {
    let mut n = 0;
    let mut s = *state as usize;
    for &b in data {
        if b == END[s] {
            s += 1;
            if s == END.len() {
                n += 1;
                s = 0;
            }
        } else {
            // The only proper prefix of the pattern that can restart on a mismatch is `\r`.
            s = usize::from(b == b'\r');
        }
    }
    *state = s as u8;
    n
}

/// The provided buffer ring: `BUFS` entries the kernel picks receive buffers from, and the
/// buffers themselves.
struct BufRing {
    /// Page-aligned ring of `BUFS` entries (shared with the kernel once registered).
    ring: *mut BufRingEntry,
    /// The buffers, `BUF_SIZE` each, indexed by buffer id.
    bufs: Box<[u8]>,
    /// Our copy of the tail (the kernel reads the published one).
    tail: u16,
}

impl BufRing {
    /// Layout of the ring memory.
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(usize::from(BUFS) * size_of::<BufRingEntry>(), 4096)
            .expect("valid layout")
    }

    /// Allocates the ring and the buffers and fills the ring with every buffer.
    fn new() -> io::Result<BufRing> {
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { std::alloc::alloc_zeroed(Self::layout()) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring"));
        }
        let mut r = BufRing {
            ring,
            bufs: vec![0u8; usize::from(BUFS) * BUF_SIZE].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..BUFS {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Registers the ring with `uring` as buffer group [`BGID`].
    fn register(&self, uring: &IoUring) -> io::Result<()> {
        // SAFETY: `ring` points to `BUFS` entries that stay allocated until `self` drops,
        // and `Canned` drops the `IoUring` (which unregisters everything) before the ring.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(self.ring as u64, BUFS, BGID, 0)
        }
    }

    /// The bytes of buffer `bid`.
    fn buf(&self, bid: u16) -> &[u8] {
        let start = usize::from(bid) * BUF_SIZE;
        &self.bufs[start..start + BUF_SIZE]
    }

    /// Puts buffer `bid` at the (unpublished) tail.
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUFS - 1));
        let addr = self.buf(bid).as_ptr() as u64;
        // SAFETY: `slot < BUFS`, so the entry lies inside the ring allocation. The slot is
        // beyond the published tail, so the kernel does not read it now; the setters write
        // only the entry's addr/len/bid fields, never entry 0's `resv` (the shared tail).
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `ring` is the base of a live, initialised ring, so `tail` gives the address
        // of entry 0's `resv` field, which the kernel reads as the ring's tail.
        let tail = unsafe { BufRingEntry::tail(self.ring) } as *const AtomicU16;
        // SAFETY: the field is a u16 at a 2-byte-aligned address inside the allocation, only
        // ever written here (with a release store, as the kernel's protocol requires).
        unsafe { (*tail).store(self.tail, Ordering::Release) };
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is gone.
        unsafe { std::alloc::dealloc(self.ring.cast(), Self::layout()) };
    }
}

/// One connection.
#[derive(Default)]
struct Conn {
    /// Partial match of `\r\n\r\n` carried across reads.
    state: u8,
    /// The first bytes of the connection, until the response kind is known.
    head: Vec<u8>,
    /// Response kind, set by the first request's path: JSON or plaintext.
    json: Option<bool>,
    /// Bytes being sent (the kernel reads them until the send completes).
    inflight: Vec<u8>,
    /// How much of `inflight` was sent.
    sent: usize,
    /// Responses produced while a send was in flight.
    pending: Vec<u8>,
    /// A send is submitted.
    sending: bool,
    /// The multishot receive is armed.
    receiving: bool,
    /// The peer closed or an error happened: close once no operation is in flight.
    closing: bool,
}

/// The server state.
struct Canned {
    /// Declared first: dropped (and unregistered) before the buffer ring.
    uring: IoUring,
    bufs: BufRing,
    listener: TcpListener,
    /// Connections by file descriptor.
    conns: Vec<Option<Conn>>,
}

impl Canned {
    /// Queues one submission, flushing the queue to the kernel when it is full.
    ///
    /// # Safety
    ///
    /// Every buffer `sqe` points to must stay valid and unmoved until its completion.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the buffers outlive the operation.
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.uring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .build()
            .user_data(UD_ACCEPT);
        // SAFETY: accept takes no buffer; the listener outlives the ring's use of it.
        unsafe { self.push(&sqe) }
    }

    fn arm_recv(&mut self, fd: i32) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(((fd as u64) << 1) | OP_RECV);
        // SAFETY: the receive uses provided buffers, which live as long as the ring.
        unsafe { self.push(&sqe) }?;
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            c.receiving = true;
        }
        Ok(())
    }

    /// Sends the rest of `fd`'s in-flight output.
    fn submit_send(&mut self, fd: i32) -> io::Result<()> {
        let Some(Some(c)) = self.conns.get_mut(fd as usize) else {
            return Ok(());
        };
        let rest = &c.inflight[c.sent..];
        let sqe = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(((fd as u64) << 1) | OP_SEND);
        c.sending = true;
        // SAFETY: `inflight` is neither written nor dropped while `sending` is set (its heap
        // buffer does not move when the `Conn` moves), and the connection is only removed
        // once no send is in flight.
        unsafe { self.push(&sqe) }
    }

    /// Starts sending `fd`'s pending output if nothing is in flight.
    fn flush(&mut self, fd: i32) -> io::Result<()> {
        let Some(Some(c)) = self.conns.get_mut(fd as usize) else {
            return Ok(());
        };
        if c.sending || c.pending.is_empty() {
            return Ok(());
        }
        std::mem::swap(&mut c.inflight, &mut c.pending);
        c.pending.clear();
        c.sent = 0;
        self.submit_send(fd)
    }

    /// Closes `fd` if it is closing and no operation is in flight.
    fn maybe_close(&mut self, fd: i32) {
        let done = matches!(
            self.conns.get(fd as usize),
            Some(Some(c)) if c.closing && !c.sending && !c.receiving
        );
        if done {
            self.conns[fd as usize] = None;
            // SAFETY: `fd` is a socket this server accepted and still owns; no operation on
            // it is in flight, so its number can be reused safely afterwards.
            unsafe { libc::close(fd) };
        }
    }

    /// Marks `fd` closing; a receive still armed is ended by shutting the socket down.
    fn close_soon(&mut self, fd: i32) {
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            c.closing = true;
            if c.receiving {
                // SAFETY: `fd` is an open socket we own; shutdown only changes its state.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
        self.maybe_close(fd);
    }

    fn on_accept(&mut self, res: i32, flags: u32) -> io::Result<()> {
        if res >= 0 {
            let fd = res;
            let one: libc::c_int = 1;
            // SAFETY: `fd` is the socket just accepted; the option value is a live c_int of
            // the given size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            let i = fd as usize;
            if self.conns.len() <= i {
                self.conns.resize_with(i + 1, || None);
            }
            self.conns[i] = Some(Conn::default());
            self.arm_recv(fd)?;
        } else {
            eprintln!(
                "[http] canned: accept: {}",
                io::Error::from_raw_os_error(-res)
            );
        }
        if !cqueue::more(flags) {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn on_recv(&mut self, fd: i32, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            c.receiving = more;
        }
        if res > 0 {
            let bid = cqueue::buffer_select(flags).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "receive without a buffer")
            })?;
            let data = &self.bufs.buf(bid)[..res as usize];
            if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
                if c.json.is_none() {
                    // Every request is longer than this prefix, so the kind is known before
                    // the first request is counted.
                    const PREFIX: &[u8] = b"GET /json";
                    let take = (PREFIX.len() - c.head.len()).min(data.len());
                    c.head.extend_from_slice(&data[..take]);
                    if c.head.len() == PREFIX.len() {
                        c.json = Some(c.head == PREFIX);
                        c.head = Vec::new();
                    }
                }
                let n = count_requests(&mut c.state, data);
                let resp = if c.json == Some(true) {
                    JSON
                } else {
                    PLAINTEXT
                };
                for _ in 0..n {
                    c.pending.extend_from_slice(resp);
                }
            }
            self.bufs.push(bid);
            self.bufs.publish();
            self.flush(fd)?;
            if !more {
                // The kernel ended the multishot receive (e.g. its CQ was full): re-arm.
                self.arm_recv(fd)?;
            }
        } else if res == -libc::ENOBUFS {
            // Every provided buffer is in use; they come back as completions are handled.
            self.arm_recv(fd)?;
        } else {
            // 0: the peer closed; <0: an error.
            self.close_soon(fd);
        }
        Ok(())
    }

    fn on_send(&mut self, fd: i32, res: i32) -> io::Result<()> {
        let Some(Some(c)) = self.conns.get_mut(fd as usize) else {
            return Ok(());
        };
        c.sending = false;
        if res < 0 {
            self.close_soon(fd);
            return Ok(());
        }
        c.sent += res as usize;
        if c.sent < c.inflight.len() {
            return self.submit_send(fd);
        }
        c.inflight.clear();
        c.sent = 0;
        if c.closing {
            self.maybe_close(fd);
            return Ok(());
        }
        self.flush(fd)
    }

    /// The event loop: never returns unless the ring fails.
    fn run(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize);
        loop {
            match self.uring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            cqes.extend(
                self.uring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for (ud, res, flags) in cqes.drain(..) {
                if ud == UD_ACCEPT {
                    self.on_accept(res, flags)?;
                    continue;
                }
                let fd = (ud >> 1) as i32;
                match ud & 1 {
                    OP_RECV => self.on_recv(fd, res, flags)?,
                    _ => self.on_send(fd, res)?,
                }
            }
        }
    }
}

/// Builds the ring, with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel accepts them.
fn ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::builder().setup_coop_taskrun().build(RING_ENTRIES))
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

/// Serves on `addr` until killed.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let uring = ring().map_err(|e| format!("io_uring: {e}"))?;
    let bufs = BufRing::new().map_err(|e| format!("buffer ring: {e}"))?;
    bufs.register(&uring)
        .map_err(|e| format!("register the buffer ring (Linux >= 5.19): {e}"))?;
    let mut server = Canned {
        uring,
        bufs,
        listener,
        conns: Vec::new(),
    };
    server.run().map_err(|e| format!("canned server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_across_reads() {
        let req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut all = Vec::new();
        for _ in 0..16 {
            all.extend_from_slice(req);
        }
        for split in 0..all.len() {
            let mut state = 0;
            let (a, b) = all.split_at(split);
            let n = count_requests(&mut state, a) + count_requests(&mut state, b);
            assert_eq!(n, 16, "split at {split}");
            assert_eq!(state, 0);
        }
    }

    #[test]
    fn partial_match_restarts_on_cr() {
        let mut state = 0;
        assert_eq!(count_requests(&mut state, b"a\r\n\r\r\n\r\n"), 1);
        assert_eq!(count_requests(&mut state, b"\r\n\r"), 0);
        assert_eq!(state, 3);
        assert_eq!(count_requests(&mut state, b"\n"), 1);
    }

    #[test]
    fn canned_lengths_match_bodies() {
        assert!(PLAINTEXT.ends_with(b"\r\n\r\nHello, World!"));
        assert!(JSON.ends_with(br#"{"message":"Hello, World!"}"#));
        assert_eq!(super::super::JSON_BODY.len(), 27);
        assert_eq!(super::super::PLAINTEXT_BODY.len(), 13);
    }
}

#[cfg(test)]
mod serve_tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    /// Reads exactly `n` bytes (or fails after a few seconds).
    fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        s.read_exact(&mut out).expect("read responses");
        out
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        if ring().is_err() {
            eprintln!("no io_uring here; skipped");
            return;
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // The server runs until the test process exits.
        std::thread::spawn(move || serve(addr));
        let deadline = Instant::now() + Duration::from_secs(5);
        let connect = || loop {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    return s;
                }
                Err(e) if Instant::now() > deadline => panic!("connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let mut plain = connect();
        let req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16);
        // Split mid-request: the count must carry across reads.
        plain.write_all(&req[..50]).expect("write");
        plain.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(20));
        plain.write_all(&req[50..]).expect("write");
        assert_eq!(
            read_n(&mut plain, 16 * PLAINTEXT.len()),
            PLAINTEXT.repeat(16)
        );

        let mut json = connect();
        json.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        assert_eq!(read_n(&mut json, JSON.len()), JSON);
    }
}
