//! monoio 0.2: one runtime per thread on its io_uring driver or its legacy (mio/epoll)
//! driver, a task per connection, owned buffers handed back and reused.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::{
    loopback, Gate, PingSpec, ServerMode, BULK_CHUNK, BULK_RECV_BUF, ECHO_BUF, REQ, REQ_BYTES,
};

/// Which monoio driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// io_uring.
    Uring,
    /// The legacy driver (mio, epoll).
    Legacy,
}

fn block_on<F: Future>(flavor: Flavor, f: F) -> F::Output {
    match flavor {
        Flavor::Uring => RuntimeBuilder::<IoUringDriver>::new()
            .build()
            .expect("monoio io_uring runtime")
            .block_on(f),
        Flavor::Legacy => RuntimeBuilder::<LegacyDriver>::new()
            .build()
            .expect("monoio legacy runtime")
            .block_on(f),
    }
}

/// The server: accepts `conns` connections and serves them in `mode` until all are closed.
pub fn server(flavor: Flavor, mode: ServerMode, conns: usize, addr_tx: mpsc::Sender<SocketAddr>) {
    block_on(flavor, async move {
        let l = TcpListener::bind(loopback()).expect("bind");
        addr_tx
            .send(l.local_addr().expect("local addr"))
            .expect("main alive");
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (s, _) = l.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            tasks.push(monoio::spawn(serve(s, mode)));
        }
        for t in tasks {
            t.await;
        }
    })
}

async fn serve(mut s: TcpStream, mode: ServerMode) {
    match mode {
        ServerMode::Echo => {
            let mut buf = Vec::with_capacity(ECHO_BUF);
            loop {
                let (res, b) = s.read(buf).await;
                let n = res.expect("server read");
                if n == 0 {
                    break;
                }
                let (res, b) = s.write_all(b).await;
                res.expect("server write");
                buf = b;
            }
        }
        ServerMode::Sink(total) => {
            let mut buf = Vec::with_capacity(BULK_RECV_BUF);
            let mut got = 0u64;
            loop {
                let (res, b) = s.read(buf).await;
                buf = b;
                let n = res.expect("server read");
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got == total {
                    let (res, _) = s.write_all(&b"!"[..]).await;
                    res.expect("ack");
                }
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_addr(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn ping(mut s: TcpStream, iters: u64) -> TcpStream {
    let mut req: Box<[u8]> = REQ_BYTES.to_vec().into_boxed_slice();
    let mut resp: Box<[u8]> = vec![0u8; REQ].into_boxed_slice();
    for _ in 0..iters {
        let (res, b) = s.write_all(req).await;
        res.expect("client write");
        req = b;
        let (res, b): (_, SliceMut<Box<[u8]>>) = s.read_exact(resp.slice_mut(0..REQ)).await;
        res.expect("client read");
        resp = b.into_inner();
    }
    s
}

/// Every connection does `iters` round trips, each in its own task.
async fn phase(streams: Vec<TcpStream>, iters: u64) -> Vec<TcpStream> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| monoio::spawn(ping(s, iters)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// The ping-pong client; returns the duration of the timed phase.
pub fn client_pingpong(flavor: Flavor, addr: SocketAddr, spec: &PingSpec, gate: &Gate) -> Duration {
    let spec = *spec;
    block_on(flavor, async move {
        let mut streams = Vec::with_capacity(spec.conns);
        for _ in 0..spec.conns {
            streams.push(connect(addr).await);
        }
        let streams = phase(streams, spec.warmup_per_conn).await;
        gate.start();
        let t = Instant::now();
        let streams = phase(streams, spec.iters_per_conn).await;
        let el = t.elapsed();
        gate.end();
        drop(streams);
        el
    })
}

/// The bulk client: streams `total` bytes and waits for the server's acknowledgement.
pub fn client_bulk(flavor: Flavor, addr: SocketAddr, total: u64) -> Duration {
    block_on(flavor, async move {
        let mut s = connect(addr).await;
        let mut chunk: Box<[u8]> = vec![0x5au8; BULK_CHUNK].into_boxed_slice();
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let len = (total - sent).min(BULK_CHUNK as u64) as usize;
            let (res, b) = s.write_all(monoio::buf::IoBuf::slice(chunk, 0..len)).await;
            res.expect("bulk write");
            chunk = b.into_inner();
            sent += len as u64;
        }
        let (res, _) = s.read_exact(vec![0u8; 1].into_boxed_slice()).await;
        res.expect("ack");
        t.elapsed()
    })
}
