//! Backend selection: auto (probe io_uring, fall back to mio), explicit, or `SINEW_TRANSPORT`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The environment variable that overrides backend selection: `uring`, `mio`, `sim` or `auto`.
pub const ENV_VAR: &str = "SINEW_TRANSPORT";

/// Which transport implementation a [`Reactor`](crate::Reactor) runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring if the kernel offers what we need, otherwise mio (epoll).
    #[default]
    Auto,
    /// Linux io_uring: completion-based, multishot accept, batched submits.
    Uring,
    /// mio over epoll: readiness adapted to completions.
    Mio,
    /// The in-memory simulated network ([`SimNet`](crate::SimNet)); `Reactor::new` joins this
    /// thread's default net ([`SimNet::current`](crate::SimNet::current)).
    Sim,
}

impl Backend {
    /// Reads [`ENV_VAR`]; unset or empty means [`Backend::Auto`], an unknown value is an error.
    pub fn from_env() -> Result<Backend> {
        match std::env::var(ENV_VAR) {
            Ok(v) if v.trim().is_empty() => Ok(Backend::Auto),
            Ok(v) => v.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Backend::Auto),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(Error::UnknownBackend(v.to_string_lossy().into_owned()))
            }
        }
    }

    /// The backend's short name, as accepted by [`ENV_VAR`].
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Uring => "uring",
            Backend::Mio => "mio",
            Backend::Sim => "sim",
        }
    }

    /// True if this backend can run on this machine (for `Auto`: always, as mio is the fallback).
    pub fn is_available(self) -> bool {
        match self {
            Backend::Auto | Backend::Mio | Backend::Sim => true,
            Backend::Uring => crate::uring::probe().is_ok(),
        }
    }

    /// Turns `Auto` into the concrete backend to use; a concrete backend that cannot run here
    /// is an [`Error::Unavailable`], never a silent fallback.
    pub fn resolve(self) -> Result<Backend> {
        match self {
            Backend::Auto => match crate::uring::probe() {
                Ok(()) => Ok(Backend::Uring),
                Err(reason) => {
                    tracing::debug!(%reason, "io_uring unavailable, falling back to mio");
                    Ok(Backend::Mio)
                }
            },
            Backend::Uring => crate::uring::probe()
                .map(|()| Backend::Uring)
                .map_err(|reason| Error::Unavailable {
                    backend: self,
                    reason,
                }),
            Backend::Mio => Ok(Backend::Mio),
            Backend::Sim => Ok(Backend::Sim),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "mio" | "epoll" => Ok(Backend::Mio),
            "sim" => Ok(Backend::Sim),
            _ => Err(Error::UnknownBackend(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("uring".parse::<Backend>().ok(), Some(Backend::Uring));
        assert_eq!("MIO".parse::<Backend>().ok(), Some(Backend::Mio));
        assert_eq!(" sim ".parse::<Backend>().ok(), Some(Backend::Sim));
        assert_eq!("auto".parse::<Backend>().ok(), Some(Backend::Auto));
        assert!(matches!(
            "kqueue".parse::<Backend>(),
            Err(Error::UnknownBackend(_))
        ));
    }

    #[test]
    fn unavailable_backend_is_an_error_not_a_fallback() {
        assert_eq!(Backend::Sim.resolve().ok(), Some(Backend::Sim));
        assert_eq!(Backend::Mio.resolve().ok(), Some(Backend::Mio));
        let auto = Backend::Auto.resolve().ok();
        assert!(matches!(auto, Some(Backend::Uring | Backend::Mio)));
    }
}
