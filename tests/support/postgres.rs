//! A real PostgreSQL server for integration tests: a throwaway cluster (initdb) in a temporary
//! directory, on a free 127.0.0.1 port with its Unix sockets in that directory, stopped and
//! removed when dropped. Clients (`psql`, `pgbench`) run from the same installation.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI on a fresh Debian
//! machine), the server runs as the `postgres` user (created by the `postgresql` package)
//! through `runuser`, in a directory that user owns.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the binaries are looked for when `SINEW_PG_BIN` is not set: Debian's layout, newest
/// version first.
const PG_ROOT: &str = "/usr/lib/postgresql";

/// How long the server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The server's binaries, or why there are none. With `SINEW_SKIP_POSTGRES=1` a missing
/// installation skips the caller's test (`None`); otherwise it fails it with what to install.
pub fn pg_bin() -> Option<PathBuf> {
    let found = std::env::var_os("SINEW_PG_BIN")
        .map(PathBuf::from)
        .or_else(newest_installed);
    match found {
        Some(bin) if bin.join("initdb").exists() && bin.join("postgres").exists() => Some(bin),
        _ if std::env::var("SINEW_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("PostgreSQL not installed: skipped (SINEW_SKIP_POSTGRES=1)");
            None
        }
        other => panic!(
            "PostgreSQL server binaries not found (looked in {:?}): install the Debian packages \
             `postgresql` and `postgresql-client` (listed in .ci/apt-packages.txt), point \
             SINEW_PG_BIN at a directory with initdb and postgres, or set \
             SINEW_SKIP_POSTGRES=1 to skip these tests",
            other.unwrap_or_else(|| PathBuf::from(PG_ROOT))
        ),
    }
}

fn newest_installed() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_ROOT)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A running PostgreSQL cluster, stopped and deleted when dropped.
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    /// Run server-side commands as this user (`Some` when the tests run as root).
    user: Option<String>,
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl PgServer {
    /// Creates a cluster with initdb and starts it; returns once it accepts connections.
    pub fn start(bin: &Path) -> PgServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sinew-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's temporary directory");
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let user = root.then(|| "postgres".to_string());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Owned by the guard from here on: whatever fails next, Drop cleans up.
        let mut pg = PgServer {
            bin: bin.to_path_buf(),
            dir,
            user,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        if let Some(u) = &pg.user {
            let chown = Command::new("chown")
                .arg(format!("{u}:"))
                .arg(&pg.dir)
                .output()
                .expect("run chown");
            assert!(
                chown.status.success(),
                "running as root, and the `{u}` user cannot own the cluster directory (the \
                 `postgresql` package creates that user): {}",
                String::from_utf8_lossy(&chown.stderr)
            );
        }
        let data = pg.dir.join("data");
        let init = pg
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .expect("run initdb");
        assert!(init.status.success(), "initdb failed: {}", text(&init));
        let log = std::fs::File::create(pg.dir.join("postgres.log")).expect("create the log");
        let log_err = log.try_clone().expect("clone the log handle");
        let child = pg
            .server_command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&pg.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=40",
            ])
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start postgres");
        pg.child = Some(child);
        pg.wait_ready();
        pg
    }

    /// A command for the server side, as the cluster's owner.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// Polls `pg_isready` until the server accepts connections; fails the test with the
    /// server's log if it exits or does not come up in time.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.addr.port().to_string(),
                    "-t",
                    "1",
                ])
                .args(["-U", "postgres", "-d", "postgres"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "postgres exited ({exited:?}) before accepting connections:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            // The poll's interval (each poll is a process): readiness itself is the event.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// The binary `program` of this installation (`psql`, `pgbench`...).
    pub fn client(&self, program: &str) -> Command {
        Command::new(self.bin.join(program))
    }

    /// A libpq connection string to `addr` (this server, or a proxy in front of it).
    pub fn conninfo(addr: SocketAddr, extra: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres {extra}",
            addr.ip(),
            addr.port()
        )
    }

    /// `psql` against `addr`, unaligned and tuples only, with no psqlrc; stdin closed.
    pub fn psql(&self, addr: SocketAddr, extra: &str) -> Command {
        let mut c = self.client("psql");
        c.arg(Self::conninfo(addr, extra))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::null());
        c
    }

    /// Runs `sql` directly against the server; its output, trimmed. Fails the test on error.
    pub fn query(&self, sql: &str) -> String {
        let out = self
            .psql(self.addr, "connect_timeout=10")
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A fast shutdown ends the backends too; the child (runuser or postgres) then
            // exits. Killing the child as well covers a server that does not stop.
            let _ = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["stop", "-m", "fast", "-w", "-t", "20"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A process's status, stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
