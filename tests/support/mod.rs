//! Helpers shared by integration tests: a real redis-server on a free port, and a raw RESP
//! connection that returns reply bytes exactly as the server sent them.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A real redis-server on a free port, stopped when dropped.
pub struct RealRedis {
    child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RealRedis {
    /// Starts redis-server and waits until it answers PING.
    pub fn start() -> RealRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed by .ci/run (apt: redis-server)");
        // Owned by the guard at once: whatever happens next, Drop stops and reaps it.
        let redis = RealRedis {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = RawConn::connect(redis.addr) {
                if c.call(&["PING"])
                    .map(|r| r == b"+PONG\r\n")
                    .unwrap_or(false)
                {
                    return redis;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::yield_now();
        }
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking RESP connection for tests.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects with a 10 s read timeout (a hung server fails the test instead of hanging it).
    pub fn connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Encodes `args` as a RESP array of bulk strings.
    pub fn encode(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one command and returns its reply's bytes.
    pub fn call(&mut self, args: &[&str]) -> std::io::Result<Vec<u8>> {
        self.send_raw(&Self::encode(args))?;
        self.reply()
    }

    /// Reads one complete reply frame.
    pub fn reply(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(n) = frame_len(&self.buf, 0) {
                return Ok(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes; returns what arrived (and was not yet consumed).
    pub fn read_to_close(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest)?;
        Ok(rest)
    }
}

/// Length of the complete RESP2/RESP3 frame at `at`, or `None` if more bytes are needed.
pub fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
    let head = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match *buf.get(at)? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after - at),
        b'$' | b'=' | b'!' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after - at);
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some(end - at)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let mut n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after - at);
            }
            if matches!(buf[at], b'%' | b'|') {
                n *= 2;
            }
            let mut pos = after;
            for _ in 0..n {
                pos += frame_len(buf, pos)?;
            }
            Some(pos - at)
        }
        _ => None,
    }
}

#[cfg(feature = "io-actors")]
pub mod sim;

pub mod postgres;

pub mod nginx;
