//! Starting, checking, measuring and always stopping the processes of the `redis` suite:
//! servers pinned to the server core, helper processes tied to the bench.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{System, SERVER_CORE};
use crate::process::{clock_ticks, free_port, stat_cpu_ticks};
pub use crate::process::{cpu_id, pinned, tied};

/// A running server process; killed when dropped, so no path out of a measurement, an error
/// or a panic, leaves it behind.
pub struct Server {
    system: System,
    child: Child,
    addr: SocketAddr,
    /// Clock ticks per second.
    ticks: f64,
}

impl Server {
    /// Starts `system` (a server: `sinew-uring`, `sinew-mio` or `redis-server`) on a free
    /// loopback port, pinned to the server core. Returns once the process is spawned; see
    /// [`Server::wait_ready`].
    pub fn start(system: System, redis_server: &Path) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("pick a port: {e}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut cmd = match system {
            System::RedisServer => {
                let mut cmd = Command::new(redis_server);
                cmd.arg("--port")
                    .arg(port.to_string())
                    .arg("--bind")
                    .arg("127.0.0.1")
                    .arg("--save")
                    .arg("")
                    .arg("--appendonly")
                    .arg("no")
                    .arg("--daemonize")
                    .arg("no")
                    .arg("--loglevel")
                    .arg("warning");
                cmd
            }
            System::SinewUring | System::SinewMio => {
                let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
                let mut cmd = Command::new(exe);
                cmd.arg("__redis-serve")
                    .arg("--system")
                    .arg(system.name())
                    .arg("--addr")
                    .arg(addr.to_string());
                cmd
            }
            System::RedisRs | System::Fred => {
                return Err(format!("{} is a client, not a server", system.name()))
            }
        };
        // Stdout stays clean for `--json`; the servers' diagnostics go to our stderr.
        let child = pinned(&mut cmd, SERVER_CORE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {} server: {e}", system.name()))?;
        Ok(Server {
            system,
            child,
            addr,
            ticks: clock_ticks(),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Polls until the server answers `PING` with `+PONG`; fails if it exits or `timeout`
    /// passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match ping(self.addr) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
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
                    "{} server did not answer PING on {} within {timeout:?} (last: {last})",
                    self.system.name(),
                    self.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU time the server process used so far (user + system, all threads), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("read /proc/{pid}/stat: {e}"))?;
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

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished helper process left behind.
pub struct Finished {
    /// Whether it exited with status 0, and the status as text.
    pub success: bool,
    /// The exit status, for messages.
    pub status: String,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

/// Runs `cmd` (already configured with its pinning) to completion with piped stdout and
/// stderr; kills it if it has not finished by `timeout`.
pub fn run_to_end(cmd: &mut Command, what: &str, timeout: Duration) -> Result<Finished, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    let mut child = KillOnDrop(child);
    let mut stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| format!("{what} stdout not piped"))?;
    let mut stderr = child
        .0
        .stderr
        .take()
        .ok_or_else(|| format!("{what} stderr not piped"))?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                // Dropping `child` kills it, which closes the pipes and ends the readers.
                drop(child);
                let _ = out_reader.join();
                let _ = err_reader.join();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("wait for {what}: {e}")),
        }
    };
    Ok(Finished {
        success: status.success(),
        status: status.to_string(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Sends one `PING` on a fresh connection and expects `+PONG`.
pub fn ping(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    while !buf.ends_with(b"\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the PING reply",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("PING answered {:?}", String::from_utf8_lossy(&buf)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_speaks_resp() {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 14];
            s.read_exact(&mut buf).expect("read");
            assert_eq!(&buf, b"*1\r\n$4\r\nPING\r\n");
            s.write_all(b"+PONG\r\n").expect("write");
        });
        ping(addr).expect("ping");
        t.join().expect("server thread");
    }

    #[test]
    fn run_to_end_kills_on_timeout() {
        let mut cmd = Command::new("sleep");
        cmd.arg("10");
        let t = Instant::now();
        let r = run_to_end(&mut cmd, "sleep", Duration::from_millis(100));
        assert!(r.is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
