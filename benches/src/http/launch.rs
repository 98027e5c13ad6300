//! Starting, checking, measuring and always stopping one server process.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{nginx, System, SERVER_CORE};
pub use crate::process::tied;
use crate::process::{free_port, pinned, stat_cpu_ticks};

/// A directory under the system's temporary directory, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory named after this process, `tag` and a counter.
    pub fn new(tag: &str) -> io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sinew-bench-http-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process; killed (and its files removed) when dropped, so no path out
/// of a measurement, an error or a panic, leaves it behind.
pub struct Server {
    system: System,
    child: Child,
    addr: SocketAddr,
    /// Clock ticks per second (`_SC_CLK_TCK`).
    ticks: f64,
    /// nginx's configuration and logs (dropped after the child is killed).
    _dir: Option<TempDir>,
}

impl Server {
    /// Starts `system` on a free loopback port, pinned to the server core. Returns once the
    /// process is spawned; see [`Server::wait_ready`].
    pub fn start(system: System, nginx_bin: Option<&Path>) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("pick a port: {e}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (mut cmd, dir) = match system {
            System::Nginx => {
                let bin = nginx_bin.ok_or("nginx not found")?;
                let dir = TempDir::new("nginx").map_err(|e| format!("nginx directory: {e}"))?;
                let cmd = nginx::command(bin, dir.path(), addr)
                    .map_err(|e| format!("nginx config: {e}"))?;
                (cmd, Some(dir))
            }
            _ => {
                let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
                let mut cmd = Command::new(exe);
                cmd.arg("__http-serve")
                    .arg("--system")
                    .arg(system.name())
                    .arg("--addr")
                    .arg(addr.to_string());
                (cmd, None)
            }
        };
        // Stdout stays clean for `--json`; the servers' diagnostics go to our stderr.
        let child = pinned(&mut cmd, SERVER_CORE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {} server: {e}", system.name()))?;
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(Server {
            system,
            child,
            addr,
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
            _dir: dir,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Polls until the server accepts a connection; fails if it exits or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
                drop(s);
                return Ok(());
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "{} server exited with {status}",
                        self.system.name()
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("wait for the {} server: {e}", self.system.name())),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} server did not accept connections on {} within {timeout:?}",
                    self.system.name(),
                    self.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends one `GET path` and checks for a 200 with `body`.
    pub fn check(&self, path: &str, body: &str) -> Result<(), String> {
        let resp = get(self.addr, path).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp);
        let status_ok = text.starts_with("HTTP/1.1 200");
        if !status_ok || !resp.ends_with(body.as_bytes()) {
            return Err(format!("unexpected response {text:?}"));
        }
        Ok(())
    }

    /// CPU time the server process used so far (user + system, all threads), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map_err(|e| format!("read /proc/{}/stat: {e}", self.child.id()))?;
        let ticks = stat_cpu_ticks(&stat).ok_or("cannot parse /proc/<pid>/stat")?;
        Ok(ticks as f64 / self.ticks)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET path` on a fresh connection; returns the whole response (head and the body
/// its `Content-Length` announces).
fn get(addr: SocketAddr, path: &str) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    // One write: a server may look at the first bytes of a connection (the canned one does).
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("no content-length in {head:?}"),
                    )
                })?;
            if buf.len() >= head_end + 4 + len {
                buf.truncate(head_end + 4 + len);
                return Ok(buf);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
        assert!(stat_cpu_ticks(&stat).is_some());
    }

    #[test]
    fn temp_dir_is_removed() {
        let d = TempDir::new("test").expect("tempdir");
        let p = d.path().to_path_buf();
        std::fs::write(p.join("f"), "x").expect("write");
        drop(d);
        assert!(!p.exists());
    }
}
