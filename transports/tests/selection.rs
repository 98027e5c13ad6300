//! `SINEW_TRANSPORT` selects the backend; an unavailable or unknown one is a clear error.
//! Each case runs in a child process, so no test mutates this process's environment.

use std::process::Command;

use sinew_transports::{Backend, Error, Reactor, ENV_VAR};

/// Set in the child: what `Reactor::from_env` must produce.
const EXPECT: &str = "SINEW_TEST_EXPECT";

#[test]
fn env_var_selects_backend() {
    if let Ok(expect) = std::env::var(EXPECT) {
        // Child side.
        let got = Reactor::from_env();
        match (expect.as_str(), got) {
            ("mio", Ok(r)) => assert_eq!(r.backend(), Backend::Mio),
            ("uring", Ok(r)) => assert_eq!(r.backend(), Backend::Uring),
            ("sim", Ok(r)) => assert_eq!(r.backend(), Backend::Sim),
            (
                "uring",
                Err(Error::Unavailable {
                    backend: Backend::Uring,
                    ..
                }),
            ) => {}
            ("unknown", Err(e @ Error::UnknownBackend(_))) => {
                assert!(e.to_string().contains("kqueue"), "{e}")
            }
            (want, got) => panic!("expected {want}, got {got:?}"),
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for (value, expect) in [
        ("mio", "mio"),
        ("uring", "uring"),
        ("sim", "sim"),
        ("kqueue", "unknown"),
    ] {
        let status = Command::new(&exe)
            .args(["--exact", "env_var_selects_backend", "--test-threads=1"])
            .env(ENV_VAR, value)
            .env(EXPECT, expect)
            .status()
            .expect("spawn child");
        assert!(status.success(), "{ENV_VAR}={value} did not give {expect}");
    }
}
