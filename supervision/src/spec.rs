//! Child specifications: plain data describing how to start a child (again and again), when to
//! restart it, and how to stop it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sinew_actors::{Actor, ActorRef, Addr, Context, SpawnError, SpawnOptions};

use crate::stable::{DownPolicy, StableAddr, StableShared};
use crate::supervisor::{Supervisor, SupervisorBuilder};

/// When a child is restarted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (not `Normal` or `Shutdown`).
    Transient,
    /// Never; the child is forgotten when it exits.
    Temporary,
}

/// How a child is stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shutdown {
    /// Ask it to stop (it stops its children, then handles what is queued) and kill it if it
    /// has not stopped after this long.
    Graceful(#[serde(with = "crate::config::millis")] Duration),
    /// Kill it at once (OTP's `brutal_kill`).
    Kill,
    /// Wait as long as it takes (OTP's `infinity`, the default for supervisors).
    Infinity,
}

/// Whether a child is a worker or a supervisor (supervisors default to `Shutdown::Infinity`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// A worker.
    Worker,
    /// A supervisor.
    Supervisor,
}

/// Starting a child failed. Handled like a crash: counted against the restart intensity and
/// retried after the backoff.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The factory refused (e.g. a resource was unavailable).
    #[error("child failed to start: {0}")]
    Failed(Arc<str>),
    /// The runtime refused the spawn (shutting down, no such worker).
    #[error("spawn refused: {0}")]
    Spawn(#[from] SpawnError),
}

impl StartError {
    /// A start failure with a message.
    pub fn failed(why: impl Into<Arc<str>>) -> Self {
        StartError::Failed(why.into())
    }
}

/// What a start factory gets: the supervisor's context, to spawn the child under it.
pub struct StartCtx<'a> {
    pub(crate) ctx: &'a mut Context<Supervisor>,
    pub(crate) opts: SpawnOptions,
}

impl StartCtx<'_> {
    /// Spawns `actor` as a child of the supervisor, with the spec's spawn options.
    pub fn spawn<A: Actor>(&mut self, actor: A) -> Result<Addr<A>, StartError> {
        Ok(self.ctx.spawn_with(actor, self.opts.clone())?)
    }
}

pub(crate) type StartFn =
    Arc<dyn Fn(&mut StartCtx<'_>) -> Result<ActorRef, StartError> + Send + Sync>;
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;

/// How to start a child and what to do when it exits. Cloneable: the same spec starts every
/// incarnation (a factory, never one-shot arguments).
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: String,
    pub(crate) start: StartFn,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) kind: ChildKind,
    pub(crate) spawn: SpawnOptions,
    /// Called when the child goes down (it may come back).
    pub(crate) on_down: Option<Hook>,
    /// Called when the child will not be started again.
    pub(crate) on_retire: Option<Hook>,
    /// For supervisor children: the builder, so configuration can be applied to it.
    pub(crate) nested: Option<Box<SupervisorBuilder>>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .finish()
    }
}

impl ChildSpec {
    /// A permanent worker started by `factory` (called again on every restart).
    pub fn new<A: Actor>(
        id: impl Into<String>,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        Self::try_new(id, move || Ok(factory()))
    }

    /// A permanent worker whose factory may fail (a failure is handled like a crash).
    pub fn try_new<A: Actor>(
        id: impl Into<String>,
        factory: impl Fn() -> Result<A, StartError> + Send + Sync + 'static,
    ) -> Self {
        Self::from_start(id, ChildKind::Worker, move |sctx| {
            let actor = factory()?;
            Ok(sctx.spawn(actor)?.actor_ref())
        })
    }

    /// A permanent worker and a stable address for it: the address keeps working across
    /// restarts; while the child is down, messages are held or refused per `down`.
    pub fn with_addr<A: Actor>(
        id: impl Into<String>,
        factory: impl Fn() -> A + Send + Sync + 'static,
        down: DownPolicy,
    ) -> (Self, StableAddr<A>) {
        let shared = StableShared::<A>::new(down);
        let s = shared.clone();
        let mut spec = Self::from_start(id, ChildKind::Worker, move |sctx| {
            let addr = sctx.spawn(factory())?;
            s.attach(addr.clone());
            Ok(addr.actor_ref())
        });
        let (d, r) = (shared.clone(), shared.clone());
        spec.on_down = Some(Arc::new(move || d.detach()));
        spec.on_retire = Some(Arc::new(move || r.retire()));
        (spec, StableAddr::new(shared))
    }

    /// A child supervisor built afresh from `builder` on every (re)start.
    pub fn supervisor(id: impl Into<String>, builder: SupervisorBuilder) -> Self {
        let b = builder.clone();
        let mut spec = Self::from_start(id, ChildKind::Supervisor, move |sctx| {
            Ok(sctx.spawn(b.build())?.actor_ref())
        });
        spec.shutdown = Shutdown::Infinity;
        spec.nested = Some(Box::new(builder));
        spec
    }

    /// A spec from a raw start function (for children that need more than a factory).
    pub fn from_start(
        id: impl Into<String>,
        kind: ChildKind,
        start: impl Fn(&mut StartCtx<'_>) -> Result<ActorRef, StartError> + Send + Sync + 'static,
    ) -> Self {
        ChildSpec {
            id: id.into(),
            start: Arc::new(start),
            restart: Restart::Permanent,
            shutdown: Shutdown::Graceful(Duration::from_secs(5)),
            kind,
            spawn: SpawnOptions::default(),
            on_down: None,
            on_retire: None,
            nested: None,
        }
    }

    /// Sets the restart type.
    pub fn restart(mut self, r: Restart) -> Self {
        self.restart = r;
        self
    }

    /// Sets how the child is stopped.
    pub fn shutdown(mut self, s: Shutdown) -> Self {
        self.shutdown = s;
        self
    }

    /// Sets where and with which mailbox the child is spawned.
    pub fn spawn_options(mut self, o: SpawnOptions) -> Self {
        self.spawn = o;
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The child's kind.
    pub fn kind(&self) -> ChildKind {
        self.kind
    }
}
