//! Pools for one destination, one per worker or one per NUMA node.
//!
//! A single [`Pool`] is one actor on one worker: every caller on another core pays a mailbox
//! hop to reach it and its answers hop back. A [`PoolGroup`] spreads the destination's pools
//! by a [`PoolScope`]: one per worker (a caller's call never leaves its core), one per NUMA
//! node (calls stay on the node; fewer, busier connections), or one shared by everybody. A
//! caller takes the pool of the worker it runs on ([`PoolGroup::local`]); code outside the
//! actors (main, tests, foreign threads) takes the pools in turn ([`PoolGroup::any`]).
//!
//! Each pool is an ordinary [`Pool`]: its own connections, breaker, retry budget, hedging and
//! metrics ([`PoolGroup::metrics`] adds them up). Connections never move between pools.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use sinew_actors::{
    Actor, Addr, Context, ReplyError, ReplyTo, SpawnError, SpawnOptions, SystemHandle,
};

use crate::client::PooledProtocol;
use crate::layout::{Layout, Role};
use crate::pool::{Pool, PoolConfig, PoolMetrics, PoolMsg, PoolResult};

/// How a [`PoolGroup`] places its pools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolScope {
    /// One pool per worker of the system, on that worker: calls never cross cores, at the cost
    /// of connections per worker.
    PerWorker,
    /// One pool per NUMA node of the layout, on one of the node's workers (its first client
    /// I/O worker, else its first worker); a caller uses the pool of its worker's node.
    /// Workers the layout does not place use the pools in turn, by worker index.
    PerNode(Layout),
    /// One pool for the whole system, on worker 0.
    Shared,
}

/// Why a [`PoolGroup`] could not start.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PoolGroupError {
    /// A pool could not be spawned (the system is shutting down, or the layout names a
    /// worker the system does not have).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The layout places no worker, so it has no node to put a pool on.
    #[error("the layout places no worker")]
    EmptyLayout,
}

/// The pools of one destination, by scope (see the module documentation).
///
/// Cloning is cheap (a few addresses); each clone takes turns of its own for [`PoolGroup::any`].
pub struct PoolGroup<P: PooledProtocol> {
    pools: Vec<Addr<Pool<P>>>,
    /// The worker each pool lives on.
    homes: Vec<usize>,
    /// The pool of each worker (an index into `pools`).
    by_worker: Vec<usize>,
    /// The next pool for callers outside the workers.
    turn: AtomicUsize,
}

impl<P: PooledProtocol> Clone for PoolGroup<P> {
    fn clone(&self) -> Self {
        PoolGroup {
            pools: self.pools.clone(),
            homes: self.homes.clone(),
            by_worker: self.by_worker.clone(),
            turn: AtomicUsize::new(self.turn.load(Ordering::Relaxed)),
        }
    }
}

impl<P: PooledProtocol> std::fmt::Debug for PoolGroup<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGroup")
            .field("homes", &self.homes)
            .field("by_worker", &self.by_worker)
            .finish_non_exhaustive()
    }
}

impl<P: PooledProtocol> PoolGroup<P> {
    /// Starts the pools of `dest` on `system` by `scope`, each a [`Pool::new`] with
    /// `make_protocol` and `cfg`. Use [`PoolGroup::start_with`] to build each pool yourself
    /// (classifier, retries, health request).
    pub fn start(
        system: &SystemHandle,
        dest: SocketAddr,
        make_protocol: impl Fn() -> P + Clone + Send + 'static,
        cfg: PoolConfig,
        scope: PoolScope,
    ) -> Result<PoolGroup<P>, PoolGroupError> {
        Self::start_with(system, scope, |_| {
            Pool::new(dest, make_protocol.clone(), cfg.clone())
        })
    }

    /// Starts the pools by `scope`, pool number `i` (in [`PoolGroup::pools`] order) built by
    /// `make_pool(i)`. If one cannot be spawned, those already started are stopped.
    pub fn start_with(
        system: &SystemHandle,
        scope: PoolScope,
        mut make_pool: impl FnMut(usize) -> Pool<P>,
    ) -> Result<PoolGroup<P>, PoolGroupError> {
        let workers = system.workers().max(1);
        let (homes, by_worker) = plan(&scope, workers)?;
        let mut pools: Vec<Addr<Pool<P>>> = Vec::with_capacity(homes.len());
        for (i, &home) in homes.iter().enumerate() {
            match system.spawn_with(make_pool(i), SpawnOptions::on_worker(home)) {
                Ok(addr) => pools.push(addr),
                Err(e) => {
                    for p in &pools {
                        p.stop();
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(PoolGroup {
            pools,
            homes,
            by_worker,
            turn: AtomicUsize::new(0),
        })
    }

    /// The pool for the actor running `ctx`: the pool of its worker (or of its node).
    pub fn local<A: Actor>(&self, ctx: &Context<A>) -> &Addr<Pool<P>> {
        self.for_worker(ctx.worker_index())
    }

    /// The pool serving worker `w` (a worker the group does not know gets a pool by its index,
    /// modulo the number of pools).
    pub fn for_worker(&self, w: usize) -> &Addr<Pool<P>> {
        &self.pools[self.index_for_worker(w)]
    }

    /// A pool for a caller that runs on no worker (main, tests, other threads): the pools in
    /// turn. Actors use [`PoolGroup::local`].
    pub fn any(&self) -> &Addr<Pool<P>> {
        let i = self.turn.fetch_add(1, Ordering::Relaxed) % self.pools.len();
        &self.pools[i]
    }

    /// Every pool.
    pub fn pools(&self) -> &[Addr<Pool<P>>] {
        &self.pools
    }

    /// The worker each pool lives on, in [`PoolGroup::pools`] order.
    pub fn homes(&self) -> &[usize] {
        &self.homes
    }

    /// The index in [`PoolGroup::pools`] of the pool serving worker `w`.
    pub fn index_for_worker(&self, w: usize) -> usize {
        self.by_worker
            .get(w)
            .copied()
            .unwrap_or(w % self.pools.len())
    }

    /// Sends a call to the pool of the actor running `ctx`; the answer goes to `reply`. If
    /// the pool's mailbox is full or the pool stopped, `reply` answers with an error at once.
    pub fn call<A: Actor>(&self, ctx: &Context<A>, req: P::Request, reply: ReplyTo<PoolResult<P>>) {
        if let Err(e) = self.local(ctx).try_send(PoolMsg::Call(req, reply)) {
            // Refused: dropping the message drops its reply address, which answers with an
            // error.
            drop(e.into_inner());
        }
    }

    /// Every pool's counters, in [`PoolGroup::pools`] order (asked of all pools at once).
    pub async fn metrics_each(&self) -> Result<Vec<PoolMetrics>, ReplyError> {
        let mut answers = Vec::with_capacity(self.pools.len());
        for p in &self.pools {
            let (reply, answer) = ReplyTo::channel();
            if p.send(PoolMsg::Metrics(reply)).await.is_err() {
                return Err(ReplyError::Stopped);
            }
            answers.push(answer);
        }
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(a.await?);
        }
        Ok(out)
    }

    /// The pools' counters added up ([`PoolMetrics::sum`]).
    pub async fn metrics(&self) -> Result<PoolMetrics, ReplyError> {
        Ok(PoolMetrics::sum(&self.metrics_each().await?))
    }

    /// Stops every pool (each closes its connections once their calls are answered).
    pub fn stop(&self) {
        for p in &self.pools {
            p.stop();
        }
    }
}

/// Where the pools go (their home workers) and which pool each of `workers` workers uses.
fn plan(scope: &PoolScope, workers: usize) -> Result<(Vec<usize>, Vec<usize>), PoolGroupError> {
    match scope {
        PoolScope::PerWorker => Ok(((0..workers).collect(), (0..workers).collect())),
        PoolScope::Shared => Ok((vec![0], vec![0; workers])),
        PoolScope::PerNode(layout) => {
            if layout.slots.is_empty() {
                return Err(PoolGroupError::EmptyLayout);
            }
            if let Some(s) = layout.slots.iter().find(|s| s.worker >= workers) {
                return Err(SpawnError::NoSuchWorker(s.worker, workers).into());
            }
            // Nodes in the order the layout first mentions them.
            let mut nodes: Vec<usize> = Vec::new();
            for s in &layout.slots {
                if !nodes.contains(&s.node) {
                    nodes.push(s.node);
                }
            }
            let homes: Vec<usize> = nodes
                .iter()
                .map(|&node| {
                    let on_node = || layout.slots.iter().filter(move |s| s.node == node);
                    on_node()
                        .find(|s| s.role == Role::ClientIo)
                        .or_else(|| on_node().next())
                        .map_or(0, |s| s.worker)
                })
                .collect();
            let by_worker = (0..workers)
                .map(|w| {
                    layout
                        .slots
                        .iter()
                        .find(|s| s.worker == w)
                        .and_then(|s| nodes.iter().position(|&n| n == s.node))
                        .unwrap_or(w % nodes.len())
                })
                .collect();
            Ok((homes, by_worker))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Machine;
    use std::time::Duration;

    #[test]
    fn per_worker_and_shared_plans() {
        assert_eq!(
            plan(&PoolScope::PerWorker, 3).unwrap(),
            (vec![0, 1, 2], vec![0, 1, 2])
        );
        assert_eq!(
            plan(&PoolScope::Shared, 3).unwrap(),
            (vec![0], vec![0, 0, 0])
        );
    }

    #[test]
    fn per_node_plan_puts_each_pool_on_its_nodes_client_io_worker() {
        // Two nodes of four CPUs: per node one server I/O, one client I/O, two app workers.
        let m = Machine::synthetic("numa:2 core:4 pu:1").unwrap();
        let layout = Layout::per_node(&m, 1, 1).unwrap();
        let (homes, by_worker) = plan(&PoolScope::PerNode(layout.clone()), 8).unwrap();
        assert_eq!(homes, vec![1, 5], "the client I/O worker of each node");
        assert_eq!(by_worker, vec![0, 0, 0, 0, 1, 1, 1, 1]);
        // A system with more workers than the layout places: the extra ones take turns.
        let (_, by_worker) = plan(&PoolScope::PerNode(layout.clone()), 10).unwrap();
        assert_eq!(&by_worker[8..], &[0, 1]);
        // Fewer: the layout names workers the system does not have.
        assert_eq!(
            plan(&PoolScope::PerNode(layout), 4),
            Err(PoolGroupError::Spawn(SpawnError::NoSuchWorker(4, 4)))
        );
        // Without client I/O workers, the node's first worker.
        let layout = Layout::per_node(&m, 0, 0).unwrap();
        assert_eq!(plan(&PoolScope::PerNode(layout), 8).unwrap().0, vec![0, 4]);
        assert_eq!(
            plan(&PoolScope::PerNode(Layout { slots: Vec::new() }), 2),
            Err(PoolGroupError::EmptyLayout)
        );
    }

    #[test]
    fn sums_add_up_and_breakers_agree_or_mix() {
        let a = PoolMetrics {
            calls: 3,
            size: 2,
            wait_max: Duration::from_millis(5),
            hedges: 1,
            breaker: "closed",
            ..PoolMetrics::default()
        };
        let b = PoolMetrics {
            calls: 4,
            size: 1,
            wait_max: Duration::from_millis(9),
            breaker: "closed",
            ..PoolMetrics::default()
        };
        let t = PoolMetrics::sum(&[a.clone(), b.clone()]);
        assert_eq!((t.calls, t.size, t.hedges), (7, 3, 1));
        assert_eq!(t.wait_max, Duration::from_millis(9));
        assert_eq!(t.breaker, "closed");
        let open = PoolMetrics {
            breaker: "open",
            ..b
        };
        assert_eq!(PoolMetrics::sum(&[a, open]).breaker, "mixed");
    }
}
