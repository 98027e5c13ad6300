//! A real nginx for integration tests: one process (no master, one worker) on a free loopback
//! port, in a temporary directory, killed when dropped. Shared by the workspace's integration
//! tests and io-actors' (`#[path]`-included there), so it uses std only.
//!
//! It serves `ok` on every path, nginx's `stub_status` on `/status`, and a file of
//! [`BIG_LEN`] bytes of [`big_byte`] on `/big`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Length of the file served on `/big`.
pub const BIG_LEN: usize = 256 * 1024;

/// Byte `i` of the file served on `/big` (a pattern, so a misplaced byte shows).
pub fn big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The nginx binary: `SINEW_NGINX`, or Debian's `/usr/sbin/nginx` (apt: nginx).
pub fn nginx_binary() -> PathBuf {
    std::env::var_os("SINEW_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temp dir.
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One nginx process serving from `dir` on 127.0.0.1:`port`; killed when dropped.
pub struct Nginx {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx (writing its configuration and `/big` into `dir`) and waits until it
    /// accepts connections. Starting again with the same `dir` and `port` brings the same
    /// server back. Fails the test with nginx's exit status if it does not come up.
    pub fn start(dir: &Path, port: u16) -> Nginx {
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
error_log stderr;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /status {{ stub_status; }}
        location = /big {{ default_type application/octet-stream; alias {d}/big.bin; }}
        location / {{ return 200 \"ok\"; }}
    }}
}}
"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let big: Vec<u8> = (0..BIG_LEN).map(big_byte).collect();
        std::fs::write(dir.join("big.bin"), big).expect("big.bin");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (apt: nginx, or set SINEW_NGINX): {e}",
                    nginx_binary().display()
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Owned by the guard at once: whatever happens next, Drop stops and reaps it.
        let mut nginx = Nginx { child, addr };
        // Ready once it accepts connections (nginx has no readiness signal of its own).
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    /// nginx's count of open client connections (stub_status), not counting the one asking.
    pub fn connections(&self) -> usize {
        let mut s = TcpStream::connect(self.addr).expect("connect to nginx");
        s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .expect("status request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("status response");
        let active = out
            .lines()
            .find_map(|l| l.strip_prefix("Active connections:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no stub_status in {out:?}"));
        active - 1
    }

    /// Stops nginx now.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}
