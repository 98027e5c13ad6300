//! The supervisor actor: starts children left to right, restarts them by strategy with backoff
//! and a restart intensity, stops them right to left, and escalates when it gives up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sinew_actors::{
    Actor, ActorId, ActorRef, Addr, Context, ExitReason, ReplyError, ReplyTo, SpawnError,
    SystemHandle, Terminated, TimerHandle,
};

use crate::backoff::{Backoff, Jitter};
use crate::config::SupervisorConfig;
use crate::event::{Observer, Observers, SupervisionEvent};
use crate::intensity::{Intensity, RestartWindow};
use crate::spec::{ChildKind, ChildSpec, Restart, Shutdown, StartCtx, StartError};

/// Which children restart when one fails.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every child: the others are stopped right to left, then all start left to right.
    OneForAll,
    /// The failed child and the ones started after it.
    RestForOne,
    /// Dynamic children started at run time (e.g. one per connection), each restarted on its
    /// own; temporary children and children that will not restart are forgotten when they exit.
    SimpleOneForOne,
}

/// Builds supervisors (cloneable: a child supervisor is rebuilt from it on every restart).
#[derive(Clone)]
pub struct SupervisorBuilder {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    children: Vec<ChildSpec>,
    observers: Observers,
    seed: u64,
    root: bool,
    config: Option<Arc<SupervisorConfig>>,
}

impl std::fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("children", &self.children.len())
            .finish()
    }
}

impl SupervisorBuilder {
    /// A one-for-one supervisor with OTP's default intensity (1 restart in 5 s) and no backoff.
    pub fn new(name: impl Into<String>) -> Self {
        SupervisorBuilder {
            name: name.into(),
            strategy: Strategy::OneForOne,
            intensity: Intensity::default(),
            backoff: Backoff::none(),
            children: Vec::new(),
            observers: Vec::new(),
            seed: 0x5EED,
            root: false,
            config: None,
        }
    }

    /// The restart strategy.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// At most `max_restarts` within `within`; one more and the supervisor gives up.
    pub fn intensity(mut self, max_restarts: usize, within: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            within,
        };
        self
    }

    /// Backoff between restarts.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Adds a child (children start in the order added).
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// Adds an observer of supervision events.
    pub fn observe(mut self, o: impl Observer) -> Self {
        self.observers.push(Arc::new(o));
        self
    }

    /// Seeds the backoff jitter (restart timing then replays exactly in deterministic mode).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Applies settings from configuration (strategy, intensity, backoff, per-child restart
    /// and shutdown; nested supervisors' sections are applied when they are built).
    pub fn config(mut self, cfg: &SupervisorConfig) -> Self {
        if let Some(s) = cfg.strategy {
            self.strategy = s;
        }
        if let Some(i) = cfg.intensity {
            self.intensity = i;
        }
        if let Some(b) = cfg.backoff {
            self.backoff = b;
        }
        self.config = Some(Arc::new(cfg.clone()));
        self
    }

    /// Builds the supervisor actor (spawn it like any actor, or nest it with
    /// [`ChildSpec::supervisor`]).
    pub fn build(&self) -> Supervisor {
        let mut children = self.children.clone();
        if let Some(cfg) = &self.config {
            for spec in &mut children {
                if let Some(c) = cfg.children.get(&spec.id) {
                    if let Some(r) = c.restart {
                        spec.restart = r;
                    }
                    if let Some(s) = c.shutdown {
                        spec.shutdown = s;
                    }
                }
                if let (Some(sub), Some(nested)) = (cfg.supervisors.get(&spec.id), &spec.nested) {
                    // A nested supervisor: rebuild its spec with its own section applied.
                    let rebuilt =
                        ChildSpec::supervisor(spec.id.clone(), nested.as_ref().clone().config(sub));
                    spec.start = rebuilt.start;
                    spec.nested = rebuilt.nested;
                }
            }
        }
        let settings = Settings {
            name: self.name.clone(),
            strategy: self.strategy,
            intensity: self.intensity,
            backoff: self.backoff,
            observers: self.observers.clone(),
            root: self.root,
        };
        Supervisor {
            settings,
            children: children
                .into_iter()
                .enumerate()
                .map(|(i, spec)| Child::new(i as u64, spec))
                .collect(),
            next_key: 0,
            window: RestartWindow::default(),
            jitter: Jitter::new(self.seed),
            phase: Phase::Running,
            me: None,
        }
        .with_next_key()
    }

    /// Builds a root supervisor: when it gives up, it stops the whole system with
    /// `ExitReason::RestartIntensity` (see `SystemHandle::exit_reason`).
    pub fn build_root(&self) -> Supervisor {
        let mut s = self.clone();
        s.root = true;
        s.build()
    }

    /// Spawns this as the root supervisor of `system`.
    pub fn spawn_root(&self, system: &SystemHandle) -> Result<SupervisorRef, SpawnError> {
        Ok(SupervisorRef {
            addr: system.spawn(self.build_root())?,
        })
    }
}

struct Settings {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    observers: Observers,
    root: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stopping `to_stop` (right to left), then starting `to_start` (left to right).
    Group {
        to_stop: Vec<u64>,
        to_start: Vec<u64>,
        delay: Duration,
    },
    /// Waiting for the backoff before a group start.
    GroupWaiting {
        to_start: Vec<u64>,
    },
    /// Stopping all children right to left because the supervisor stops.
    ShuttingDown,
    /// Stopping all children right to left because the intensity was exceeded.
    GivingUp,
}

struct Child {
    key: u64,
    spec: ChildSpec,
    actor: Option<ActorRef>,
    attempts: u32,
    started_at: Option<Instant>,
    restart_timer: Option<TimerHandle>,
    kill_timer: Option<TimerHandle>,
    /// Being stopped by us (group restart, terminate request, shutdown): not a failure.
    stopping: bool,
    /// Remove the spec once it has stopped (terminate request, dynamic children).
    remove: bool,
}

impl Child {
    fn new(key: u64, spec: ChildSpec) -> Self {
        Child {
            key,
            spec,
            actor: None,
            attempts: 0,
            started_at: None,
            restart_timer: None,
            kill_timer: None,
            stopping: false,
            remove: false,
        }
    }
}

/// What a supervisor answers about a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Spec id.
    pub id: String,
    /// Current incarnation, if running.
    pub actor: Option<ActorId>,
    /// Consecutive restarts (reset after a stable period).
    pub restarts: u32,
    /// Restart type.
    pub restart: Restart,
    /// Worker or supervisor.
    pub kind: ChildKind,
}

/// Messages a supervisor handles.
pub enum SupervisorMsg {
    /// Starts (and supervises) another child; answers its first incarnation.
    StartChild(ChildSpec, ReplyTo<Result<ActorId, StartError>>),
    /// Stops a child by spec id and forgets its spec; answers whether it existed.
    TerminateChild(String, ReplyTo<bool>),
    /// Lists the children.
    Children(ReplyTo<Vec<ChildInfo>>),
    /// Backoff elapsed for one child.
    Restart(u64),
    /// Backoff elapsed for a group restart.
    GroupStart,
    /// A child did not stop within its shutdown timeout.
    Kill(ActorId),
}

/// A supervisor: an actor whose children are described by [`ChildSpec`]s.
pub struct Supervisor {
    settings: Settings,
    children: Vec<Child>,
    next_key: u64,
    window: RestartWindow,
    jitter: Jitter,
    phase: Phase,
    me: Option<ActorId>,
}

impl Supervisor {
    fn with_next_key(mut self) -> Self {
        self.next_key = self.children.len() as u64;
        self
    }

    fn id(&self) -> ActorId {
        self.me.unwrap_or_else(|| unreachable!("set in started"))
    }

    fn emit(&self, ev: SupervisionEvent) {
        match &ev {
            SupervisionEvent::ChildExited { reason, .. } if !reason.is_normal() => {
                tracing::warn!(supervisor = %self.settings.name, event = ?ev, "supervision")
            }
            SupervisionEvent::IntensityExceeded { .. } | SupervisionEvent::Escalated { .. } => {
                tracing::error!(supervisor = %self.settings.name, event = ?ev, "supervision")
            }
            _ => tracing::info!(supervisor = %self.settings.name, event = ?ev, "supervision"),
        }
        for o in &self.settings.observers {
            o.on_event(&ev);
        }
    }

    fn index_of_key(&self, key: u64) -> Option<usize> {
        self.children.iter().position(|c| c.key == key)
    }

    fn index_of_actor(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.actor.as_ref().is_some_and(|a| a.id() == id))
    }

    /// Starts one child; a failure is handled like a crash. Returns the new incarnation.
    fn start(&mut self, key: u64, ctx: &mut Context<Self>) -> Result<ActorId, StartError> {
        let Some(i) = self.index_of_key(key) else {
            return Err(StartError::failed("no such child"));
        };
        let (start, opts, id) = {
            let c = &mut self.children[i];
            c.restart_timer = None;
            (
                c.spec.start.clone(),
                c.spec.spawn.clone(),
                c.spec.id.clone(),
            )
        };
        let result = start(&mut StartCtx {
            ctx: &mut *ctx,
            opts,
        });
        match result {
            Ok(actor) => {
                let aid = actor.id();
                let now = ctx.now();
                let c = &mut self.children[i];
                c.actor = Some(actor);
                c.started_at = Some(now);
                c.stopping = false;
                self.emit(SupervisionEvent::ChildStarted {
                    supervisor: self.id(),
                    child: id,
                    actor: aid,
                });
                Ok(aid)
            }
            Err(error) => {
                self.emit(SupervisionEvent::StartFailed {
                    supervisor: self.id(),
                    child: id,
                    error: error.clone(),
                });
                self.failed(key, ctx);
                Err(error)
            }
        }
    }

    /// A child failed (crashed, or failed to start): count it, then restart by strategy.
    fn failed(&mut self, key: u64, ctx: &mut Context<Self>) {
        let now = ctx.now();
        if !self.window.allow(self.settings.intensity, now) {
            self.give_up(ctx);
            return;
        }
        let Some(i) = self.index_of_key(key) else {
            return;
        };
        let backoff = self.settings.backoff;
        let random = self.jitter.next_f64();
        let c = &mut self.children[i];
        if c.started_at
            .is_some_and(|t| now.saturating_duration_since(t) >= backoff.reset_after)
        {
            c.attempts = 0;
        }
        let delay = backoff.delay(c.attempts, random);
        c.attempts = c.attempts.saturating_add(1);
        let (child, attempt) = (c.spec.id.clone(), c.attempts);
        self.emit(SupervisionEvent::ChildRestarting {
            supervisor: self.id(),
            child,
            attempt,
            delay,
        });
        match self.settings.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => self.restart_after(key, delay, ctx),
            Strategy::OneForAll => self.group_restart(0, delay, ctx),
            Strategy::RestForOne => self.group_restart(i, delay, ctx),
        }
    }

    fn restart_after(&mut self, key: u64, delay: Duration, ctx: &mut Context<Self>) {
        if delay.is_zero() {
            let _ = self.start(key, ctx);
        } else if let Some(i) = self.index_of_key(key) {
            self.children[i].restart_timer =
                Some(ctx.send_after(delay, SupervisorMsg::Restart(key)));
        }
    }

    /// Restarts the children from index `from` on: stop the running ones right to left, then
    /// start all of them left to right after `delay`.
    fn group_restart(&mut self, from: usize, delay: Duration, ctx: &mut Context<Self>) {
        let (mut to_stop, mut to_start) = match std::mem::replace(&mut self.phase, Phase::Running) {
            Phase::Group {
                to_stop, to_start, ..
            } => (to_stop, to_start),
            Phase::GroupWaiting { to_start } => (Vec::new(), to_start),
            _ => (Vec::new(), Vec::new()),
        };
        for c in &mut self.children[from..] {
            if let Some(t) = c.restart_timer.take() {
                t.cancel();
            }
            if !to_start.contains(&c.key) {
                to_start.push(c.key);
            }
            if c.actor.is_some() && !c.stopping && !to_stop.contains(&c.key) {
                to_stop.push(c.key);
            }
        }
        let order = |k: &u64| self.index_of_key(*k).unwrap_or(usize::MAX);
        to_start.sort_by_key(order);
        to_stop.sort_by_key(|k| std::cmp::Reverse(order(k)));
        self.phase = Phase::Group {
            to_stop,
            to_start,
            delay,
        };
        self.continue_group(ctx);
    }

    fn continue_group(&mut self, ctx: &mut Context<Self>) {
        let Phase::Group {
            to_stop,
            to_start,
            delay,
        } = &mut self.phase
        else {
            return;
        };
        // Wait while one of ours is still stopping.
        if self
            .children
            .iter()
            .any(|c| c.stopping && c.actor.is_some())
        {
            return;
        }
        if let Some(key) = to_stop.first().copied() {
            to_stop.remove(0);
            self.stop_child(key, ctx);
            return;
        }
        let (to_start, delay) = (std::mem::take(to_start), *delay);
        if delay.is_zero() {
            self.phase = Phase::Running;
            self.start_all(to_start, ctx);
        } else {
            self.phase = Phase::GroupWaiting { to_start };
            ctx.send_after(delay, SupervisorMsg::GroupStart);
        }
    }

    fn start_all(&mut self, keys: Vec<u64>, ctx: &mut Context<Self>) {
        for key in keys {
            if self.phase != Phase::Running {
                // A start failure turned into another group restart or a give-up.
                return;
            }
            let running = self
                .index_of_key(key)
                .is_some_and(|i| self.children[i].actor.is_some());
            if !running {
                let _ = self.start(key, ctx);
            }
        }
    }

    /// Asks one child to stop per its shutdown spec.
    fn stop_child(&mut self, key: u64, ctx: &mut Context<Self>) {
        let Some(i) = self.index_of_key(key) else {
            return;
        };
        let c = &mut self.children[i];
        let Some(actor) = c.actor.clone() else { return };
        c.stopping = true;
        match c.spec.shutdown {
            Shutdown::Kill => actor.kill(),
            Shutdown::Graceful(t) => {
                actor.shutdown();
                c.kill_timer = Some(ctx.send_after(t, SupervisorMsg::Kill(actor.id())));
            }
            Shutdown::Infinity => actor.shutdown(),
        }
    }

    /// Stops the rightmost running child; true when one was asked to stop.
    fn stop_rightmost(&mut self, ctx: &mut Context<Self>) -> bool {
        if self
            .children
            .iter()
            .any(|c| c.stopping && c.actor.is_some())
        {
            return true;
        }
        let key = self
            .children
            .iter()
            .rev()
            .find(|c| c.actor.is_some())
            .map(|c| c.key);
        match key {
            Some(k) => {
                self.stop_child(k, ctx);
                true
            }
            None => false,
        }
    }

    fn cancel_restart_timers(&mut self) {
        for c in &mut self.children {
            if let Some(t) = c.restart_timer.take() {
                t.cancel();
            }
        }
    }

    fn give_up(&mut self, ctx: &mut Context<Self>) {
        self.emit(SupervisionEvent::IntensityExceeded {
            supervisor: self.id(),
            restarts: self.window.len(),
            within: self.settings.intensity.within,
        });
        self.phase = Phase::GivingUp;
        self.cancel_restart_timers();
        if !self.stop_rightmost(ctx) {
            self.escalate(ctx);
        }
    }

    fn escalate(&mut self, ctx: &mut Context<Self>) {
        let reason = ExitReason::RestartIntensity;
        self.emit(SupervisionEvent::Escalated {
            supervisor: self.id(),
            name: self.settings.name.clone(),
            reason: reason.clone(),
        });
        for c in &self.children {
            if let Some(h) = &c.spec.on_retire {
                h();
            }
        }
        if self.settings.root {
            ctx.system().shutdown_with(reason.clone());
        }
        ctx.stop_with(reason);
    }

    fn child_exited(&mut self, id: ActorId, reason: ExitReason, ctx: &mut Context<Self>) {
        let Some(i) = self.index_of_actor(id) else {
            return;
        };
        let c = &mut self.children[i];
        c.actor = None;
        if let Some(t) = c.kill_timer.take() {
            t.cancel();
        }
        if let Some(h) = &c.spec.on_down {
            h();
        }
        let (key, by_us, restart, child) = (c.key, c.stopping, c.spec.restart, c.spec.id.clone());
        c.stopping = false;
        self.emit(SupervisionEvent::ChildExited {
            supervisor: self.id(),
            child,
            actor: id,
            reason: reason.clone(),
        });
        if self.children[i].remove {
            self.forget(i);
        }
        match self.phase {
            Phase::ShuttingDown => {
                self.stop_rightmost(ctx);
                return;
            }
            Phase::GivingUp => {
                if !self.stop_rightmost(ctx) {
                    self.escalate(ctx);
                }
                return;
            }
            _ if by_us => {
                self.continue_group(ctx);
                return;
            }
            _ => {}
        }
        let again = match restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        if !again {
            if let Some(i) = self.index_of_key(key) {
                if let Some(h) = &self.children[i].spec.on_retire {
                    h();
                }
                if restart == Restart::Temporary
                    || self.settings.strategy == Strategy::SimpleOneForOne
                {
                    self.forget(i);
                }
            }
            return;
        }
        self.failed(key, ctx);
    }

    fn forget(&mut self, i: usize) {
        let c = self.children.remove(i);
        if let Some(t) = c.restart_timer {
            t.cancel();
        }
        if let Some(h) = &c.spec.on_retire {
            h();
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.id());
        tracing::debug!(supervisor = %self.settings.name, children = self.children.len(), "supervisor started");
        let keys: Vec<u64> = self.children.iter().map(|c| c.key).collect();
        self.start_all(keys, ctx);
    }

    fn handle(&mut self, msg: SupervisorMsg, ctx: &mut Context<Self>) {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                if !matches!(
                    self.phase,
                    Phase::Running | Phase::Group { .. } | Phase::GroupWaiting { .. }
                ) {
                    reply.fail(ReplyError::Stopped);
                    return;
                }
                let key = self.next_key;
                self.next_key += 1;
                self.children.push(Child::new(key, spec));
                reply.send(self.start(key, ctx));
            }
            SupervisorMsg::TerminateChild(id, reply) => {
                let Some(i) = self.children.iter().position(|c| c.spec.id == id) else {
                    reply.send(false);
                    return;
                };
                let key = self.children[i].key;
                if self.children[i].actor.is_some() {
                    self.children[i].remove = true;
                    self.stop_child(key, ctx);
                } else {
                    self.forget(i);
                }
                reply.send(true);
            }
            SupervisorMsg::Children(reply) => {
                reply.send(
                    self.children
                        .iter()
                        .map(|c| ChildInfo {
                            id: c.spec.id.clone(),
                            actor: c.actor.as_ref().map(|a| a.id()),
                            restarts: c.attempts,
                            restart: c.spec.restart,
                            kind: c.spec.kind,
                        })
                        .collect(),
                );
            }
            SupervisorMsg::Restart(key) => {
                if self.phase == Phase::Running {
                    let _ = self.start(key, ctx);
                }
            }
            SupervisorMsg::GroupStart => {
                if let Phase::GroupWaiting { to_start } =
                    std::mem::replace(&mut self.phase, Phase::Running)
                {
                    self.start_all(to_start, ctx);
                }
            }
            SupervisorMsg::Kill(id) => {
                if let Some(i) = self.index_of_actor(id) {
                    if let Some(a) = &self.children[i].actor {
                        tracing::warn!(supervisor = %self.settings.name, child = %self.children[i].spec.id,
                            "child did not stop in time; killing it");
                        a.kill();
                    }
                }
            }
        }
    }

    fn terminated(&mut self, ev: Terminated, ctx: &mut Context<Self>) {
        if ev.child {
            self.child_exited(ev.id, ev.reason, ctx);
        }
    }

    fn stops_own_children(&self) -> bool {
        true
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::GivingUp {
            self.phase = Phase::ShuttingDown;
        }
        self.cancel_restart_timers();
        self.stop_rightmost(ctx);
    }

    fn stopped(&mut self, _reason: &ExitReason) {
        for c in &self.children {
            if let Some(h) = &c.spec.on_retire {
                h();
            }
        }
    }
}

/// A handle to a running supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorRef {
    addr: Addr<Supervisor>,
}

impl SupervisorRef {
    /// Wraps an address.
    pub fn new(addr: Addr<Supervisor>) -> Self {
        SupervisorRef { addr }
    }

    /// The supervisor's address.
    pub fn addr(&self) -> &Addr<Supervisor> {
        &self.addr
    }

    /// Starts and supervises another child (dynamic children of `SimpleOneForOne`).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ActorId, StartError> {
        match self.addr.ask(|r| SupervisorMsg::StartChild(spec, r)).await {
            Ok(r) => r,
            Err(e) => Err(StartError::failed(e.to_string())),
        }
    }

    /// Stops a child by spec id and forgets it.
    pub async fn terminate_child(&self, id: impl Into<String>) -> Result<bool, ReplyError> {
        let id = id.into();
        self.addr
            .ask(|r| SupervisorMsg::TerminateChild(id, r))
            .await
    }

    /// The children and their state.
    pub async fn children(&self) -> Result<Vec<ChildInfo>, ReplyError> {
        self.addr.ask(SupervisorMsg::Children).await
    }
}
