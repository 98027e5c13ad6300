//! Process plumbing shared by the suites that run servers and load generators as separate
//! processes (`http`, `redis`): free ports, pinning to a core, dying with the bench, and CPU
//! time read from `/proc`.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::Command;

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
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
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
    use std::time::{Duration, Instant};

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "1234 (we ird) name)) S 1 2 3 4 5 6 7 8 9 10 300 25 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
        assert!(stat_cpu_ticks(&stat).is_some());
        assert!(clock_ticks() > 0.0);
        assert!(free_port().expect("a port") > 0);
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
}
