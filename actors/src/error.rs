//! Typed errors of the actor runtime, each classified transient or fatal where a caller must
//! decide whether to retry.

use std::fmt;

/// A message could not be enqueued; the message is handed back.
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// The mailbox is at capacity (transient: retry later, or wait with `send().await`).
    #[error("mailbox full")]
    Full(M),
    /// The actor has stopped or is draining before it stops (fatal for this address).
    #[error("actor stopped")]
    Closed(M),
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Closed(m) => m,
        }
    }

    /// True when retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why a reply did not arrive.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The `ReplyTo` was dropped unanswered: its holder stopped, panicked or discarded it.
    #[error("reply address dropped unanswered")]
    Dropped,
    /// The deadline carried by the request passed first.
    #[error("deadline passed before the reply")]
    Timeout,
    /// The request could not be enqueued because the target's mailbox was full.
    #[error("target mailbox full")]
    MailboxFull,
    /// The target actor had stopped.
    #[error("target actor stopped")]
    Stopped,
}

impl ReplyError {
    /// True when the same request may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ReplyError::Stopped)
    }
}

/// Spawning an actor failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// The system is shutting down and accepts no new actors.
    #[error("system is shutting down")]
    ShuttingDown,
    /// A placement named a worker the system does not have.
    #[error("no worker {0} (the system has {1})")]
    NoSuchWorker(usize, usize),
}

/// Building or running a system failed.
#[derive(thiserror::Error, Debug)]
pub enum SystemError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A worker thread could not be started.
    #[error("could not start worker thread: {0}")]
    Thread(#[from] std::io::Error),
    /// A worker's driver could not be built.
    #[error("worker {worker}: driver failed to start: {error}")]
    Driver {
        /// The worker index.
        worker: usize,
        /// The factory's error.
        error: String,
    },
    /// Pinning to a core was requested but the core does not exist.
    #[error("cannot pin worker {worker} to core {core}: no such core")]
    NoSuchCore {
        /// The worker index.
        worker: usize,
        /// The requested core id.
        core: usize,
    },
}

/// A name could not be registered.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Another live actor holds the name.
    #[error("name {0:?} is already registered")]
    Taken(String),
}
