//! tokio 1 (epoll through mio): one current-thread runtime per thread, a task per
//! connection, stack buffers reused across reads.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{
    loopback, Gate, PingSpec, ServerMode, BULK_CHUNK, BULK_RECV_BUF, ECHO_BUF, REQ, REQ_BYTES,
};
use crate::actors::current_thread_runtime;

/// The server: accepts `conns` connections and serves them in `mode` until all are closed.
pub fn server(mode: ServerMode, conns: usize, addr_tx: mpsc::Sender<SocketAddr>) {
    current_thread_runtime().block_on(async move {
        let l = TcpListener::bind(loopback()).await.expect("bind");
        addr_tx
            .send(l.local_addr().expect("local addr"))
            .expect("main alive");
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (s, _) = l.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            tasks.push(tokio::spawn(serve(s, mode)));
        }
        for t in tasks {
            t.await.expect("connection task");
        }
    })
}

async fn serve(mut s: TcpStream, mode: ServerMode) {
    match mode {
        ServerMode::Echo => {
            let mut buf = vec![0u8; ECHO_BUF];
            loop {
                let n = s.read(&mut buf).await.expect("server read");
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.expect("server write");
            }
        }
        ServerMode::Sink(total) => {
            let mut buf = vec![0u8; BULK_RECV_BUF];
            let mut got = 0u64;
            loop {
                let n = s.read(&mut buf).await.expect("server read");
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got == total {
                    s.write_all(b"!").await.expect("ack");
                }
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn ping(mut s: TcpStream, iters: u64) -> TcpStream {
    let mut resp = [0u8; REQ];
    for _ in 0..iters {
        s.write_all(&REQ_BYTES).await.expect("client write");
        s.read_exact(&mut resp).await.expect("client read");
    }
    s
}

/// Every connection does `iters` round trips, each in its own task.
async fn phase(streams: Vec<TcpStream>, iters: u64) -> Vec<TcpStream> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(ping(s, iters)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("ping task"));
    }
    out
}

/// The ping-pong client; returns the duration of the timed phase.
pub fn client_pingpong(addr: SocketAddr, spec: &PingSpec, gate: &Gate) -> Duration {
    let spec = *spec;
    current_thread_runtime().block_on(async move {
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
pub fn client_bulk(addr: SocketAddr, total: u64) -> Duration {
    current_thread_runtime().block_on(async move {
        let mut s = connect(addr).await;
        let chunk = vec![0x5au8; BULK_CHUNK];
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let len = (total - sent).min(BULK_CHUNK as u64) as usize;
            s.write_all(&chunk[..len]).await.expect("bulk write");
            sent += len as u64;
        }
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).await.expect("ack");
        t.elapsed()
    })
}
