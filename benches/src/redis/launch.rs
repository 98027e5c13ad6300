//! Starting, checking, measuring and always stopping the processes of the `redis` suite:
//! servers pinned to the server core, helper processes tied to the bench.
//!
//! (The `http` suite has the same helpers in its private `launch` module; these are kept
//! separate so the two suites can change independently.)

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{System, SERVER_CORE};

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// The OS cpu id of core index `core` of the bench's cores (wrapping on small machines).
pub fn cpu_id(core: usize) -> usize {
    crate::actors::core(core).map(|c| c.id).unwrap_or(core)
}

/// Pins the calling process to `cpu` (when given) and asks the kernel to SIGKILL it when the
/// thread that spawned it exits. Runs in the forked child between `fork` and `exec`, so it
/// only makes system calls on stack data (all async-signal-safe).
fn pin_and_tie(cpu: Option<usize>) -> io::Result<()> {
    if let Some(cpu) = cpu {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpu out of range",
            ));
        }
        // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above) and `set` is a valid, owned set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: pid 0 is the calling process; the size and pointer describe `set`, which
        // lives across the call.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: PR_SET_PDEATHSIG takes a signal number as its one argument; no memory involved.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` start pinned to core index `core` (every thread it ever starts included) and
/// die with the bench.
pub fn pinned(cmd: &mut Command, core: usize) -> &mut Command {
    let cpu = cpu_id(core);
    // SAFETY: the hook runs in the child after `fork`; `pin_and_tie` allocates nothing, takes
    // no lock and only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(move || pin_and_tie(Some(cpu))) }
}

/// Makes `cmd` die with the bench (it keeps its own affinity: `taskset` pins it).
pub fn tied(cmd: &mut Command) -> &mut Command {
    // SAFETY: as in `pinned`: only an async-signal-safe `prctl` runs after `fork`.
    unsafe { cmd.pre_exec(|| pin_and_tie(None)) }
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc/<pid>/stat` CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

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

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses, so the split is at the LAST `)`): field 3 (state) is index 0.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// utime + stime (fields 14 and 15, clock ticks) of a `/proc/<pid>/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let f = stat_fields(stat)?;
    let utime: u64 = f.get(14 - 3)?.parse().ok()?;
    let stime: u64 = f.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system, every thread) this process used so far, in seconds, from
/// `getrusage(RUSAGE_SELF)` (microsecond resolution, unlike `/proc`'s clock ticks).
pub fn own_cpu_seconds() -> Result<f64, String> {
    // SAFETY: `rusage` is plain data; all zeroes is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to an owned, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(format!("getrusage: {}", io::Error::last_os_error()));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(ru.ru_utime) + secs(ru.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 \
                    1000 1000000 200 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows() {
        let a = own_cpu_seconds().expect("getrusage");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let b = own_cpu_seconds().expect("getrusage");
        assert!(b > a, "{a} -> {b}");
    }

    #[test]
    fn ping_speaks_resp() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
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
