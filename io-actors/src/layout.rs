//! Placement of workers on the machine: which CPUs run I/O workers and which run application
//! workers, per NUMA node.
//!
//! The topology comes from hwloc: the real one for binding ([`Machine::detect`]), or a synthetic
//! one (`"pack:2 numa:1 core:4 pu:2"`) to compute and test layouts for machines we do not have:
//! binding through a synthetic topology would silently do nothing, so layouts only produce
//! CPU numbers, and the system pins its workers to them (`SystemBuilder::pin_to`).

use hwlocality::object::types::ObjectType;
use hwlocality::Topology;

/// A placement error.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// hwloc could not read or build the topology.
    #[error("topology: {0}")]
    Topology(String),
    /// A node has fewer CPUs than the layout asks for.
    #[error("NUMA node {node} has {available} CPUs, the layout needs {wanted}")]
    NotEnoughCpus {
        /// The node's OS index.
        node: usize,
        /// CPUs it has.
        available: usize,
        /// CPUs asked for.
        wanted: usize,
    },
    /// An explicit layout names a CPU the machine does not have.
    #[error("CPU {0} does not exist on this machine")]
    NoSuchCpu(usize),
    /// An explicit layout gives one CPU two roles.
    #[error("CPU {0} is given more than one role")]
    Overlap(usize),
}

/// One NUMA node: its OS index and its CPUs (OS indices of processing units), ordered so that
/// the first PU of every core comes before any SMT sibling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's OS index.
    pub os_index: usize,
    /// Its CPUs.
    pub cpus: Vec<usize>,
}

/// The machine as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// NUMA nodes in OS-index order.
    pub nodes: Vec<Node>,
}

impl Machine {
    /// The machine this process runs on.
    pub fn detect() -> Result<Machine, LayoutError> {
        let t = Topology::new().map_err(|e| LayoutError::Topology(e.to_string()))?;
        Ok(Self::from_topology(&t))
    }

    /// A synthetic machine from an hwloc description, e.g. `"pack:2 numa:1 core:4 pu:2"`.
    pub fn synthetic(description: &str) -> Result<Machine, LayoutError> {
        let t = Topology::builder()
            .from_synthetic(description)
            .map_err(|e| LayoutError::Topology(e.to_string()))?
            .build()
            .map_err(|e| LayoutError::Topology(e.to_string()))?;
        Ok(Self::from_topology(&t))
    }

    fn from_topology(t: &Topology) -> Machine {
        let mut nodes = Vec::new();
        for numa in t.objects_with_type(ObjectType::NUMANode) {
            let Some(cpuset) = numa.cpuset() else {
                continue;
            };
            // Order PUs by their rank inside their core, then by core: distinct cores first.
            let mut pus: Vec<(usize, usize)> = t
                .objects_with_type(ObjectType::PU)
                .filter_map(|pu| {
                    let os = pu.os_index()?;
                    let in_node = cpuset.is_set(os);
                    let rank = pu.sibling_rank();
                    in_node.then_some((rank, os))
                })
                .collect();
            pus.sort_unstable();
            nodes.push(Node {
                os_index: numa.os_index().unwrap_or(nodes.len()),
                cpus: pus.into_iter().map(|(_, os)| os).collect(),
            });
        }
        if nodes.is_empty() {
            // No NUMA information: one node with every CPU.
            let cpus = t.cpuset().iter_set().map(usize::from).collect();
            nodes.push(Node { os_index: 0, cpus });
        }
        nodes.sort_by_key(|n| n.os_index);
        Machine { nodes }
    }

    /// Every CPU.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().flat_map(|n| n.cpus.iter().copied())
    }

    /// The node a CPU belongs to.
    pub fn node_of(&self, cpu: usize) -> Option<usize> {
        self.nodes
            .iter()
            .find(|n| n.cpus.contains(&cpu))
            .map(|n| n.os_index)
    }
}

/// What a worker does.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Server I/O: listeners and inbound connections.
    ServerIo,
    /// Client I/O: outbound connections and pools.
    ClientIo,
    /// Application actors.
    App,
}

/// One worker's placement.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Worker index in the system.
    pub worker: usize,
    /// NUMA node.
    pub node: usize,
    /// CPU it is pinned to.
    pub cpu: usize,
    /// Its role.
    pub role: Role,
}

/// Workers, their CPUs, nodes and roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One slot per worker, in worker order.
    pub slots: Vec<Slot>,
}

impl Layout {
    /// Per NUMA node: `server_io` server I/O workers and `client_io` client I/O workers on
    /// distinct cores, and application workers on the node's remaining CPUs.
    pub fn per_node(
        machine: &Machine,
        server_io: usize,
        client_io: usize,
    ) -> Result<Layout, LayoutError> {
        let mut slots = Vec::new();
        for node in &machine.nodes {
            let wanted = server_io + client_io;
            if node.cpus.len() < wanted.max(1) {
                return Err(LayoutError::NotEnoughCpus {
                    node: node.os_index,
                    available: node.cpus.len(),
                    wanted,
                });
            }
            for (i, cpu) in node.cpus.iter().enumerate() {
                let role = if i < server_io {
                    Role::ServerIo
                } else if i < wanted {
                    Role::ClientIo
                } else {
                    Role::App
                };
                slots.push(Slot {
                    worker: slots.len(),
                    node: node.os_index,
                    cpu: *cpu,
                    role,
                });
            }
        }
        Ok(Layout { slots })
    }

    /// An explicit core layout (the seeds' example: CPUs 0-3 server I/O, 4-7 client I/O, the
    /// rest application). CPUs listed nowhere are left unused unless `rest_app` is set.
    pub fn explicit(
        machine: &Machine,
        server_io: &[usize],
        client_io: &[usize],
        app: &[usize],
        rest_app: bool,
    ) -> Result<Layout, LayoutError> {
        let mut seen = std::collections::HashSet::new();
        let mut slots = Vec::new();
        let mut add = |cpu: usize, role: Role, slots: &mut Vec<Slot>| -> Result<(), LayoutError> {
            let node = machine.node_of(cpu).ok_or(LayoutError::NoSuchCpu(cpu))?;
            if !seen.insert(cpu) {
                return Err(LayoutError::Overlap(cpu));
            }
            slots.push(Slot {
                worker: slots.len(),
                node,
                cpu,
                role,
            });
            Ok(())
        };
        for &c in server_io {
            add(c, Role::ServerIo, &mut slots)?;
        }
        for &c in client_io {
            add(c, Role::ClientIo, &mut slots)?;
        }
        for &c in app {
            add(c, Role::App, &mut slots)?;
        }
        if rest_app {
            let rest: Vec<usize> = machine
                .cpus()
                .filter(|c| !server_io.contains(c) && !client_io.contains(c) && !app.contains(c))
                .collect();
            for c in rest {
                add(c, Role::App, &mut slots)?;
            }
        }
        Ok(Layout { slots })
    }

    /// The CPU of each worker, for `SystemBuilder::pin_to`.
    pub fn pin_list(&self) -> Vec<usize> {
        self.slots.iter().map(|s| s.cpu).collect()
    }

    /// Workers with `role` on `node`: node-local routing picks among these first.
    pub fn workers(&self, role: Role, node: usize) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.role == role && s.node == node)
            .map(|s| s.worker)
            .collect()
    }

    /// The node of worker `w`.
    pub fn node_of_worker(&self, w: usize) -> Option<usize> {
        self.slots.get(w).map(|s| s.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_packages_with_smt_put_io_on_distinct_cores() {
        let m = Machine::synthetic("pack:2 numa:1 core:4 pu:2").unwrap();
        assert_eq!(m.nodes.len(), 2);
        assert!(m.nodes.iter().all(|n| n.cpus.len() == 8));
        let l = Layout::per_node(&m, 2, 1).unwrap();
        assert_eq!(l.slots.len(), 16);
        for node in [0, 1] {
            assert_eq!(l.workers(Role::ServerIo, node).len(), 2);
            assert_eq!(l.workers(Role::ClientIo, node).len(), 1);
            assert_eq!(l.workers(Role::App, node).len(), 5);
            // The three I/O workers of a node sit on three different cores (no SMT siblings):
            // in "core:4 pu:2" PUs 2k and 2k+1 share a core.
            let io: Vec<usize> = l
                .slots
                .iter()
                .filter(|s| s.node == node && s.role != Role::App)
                .map(|s| s.cpu / 2)
                .collect();
            let mut cores = io.clone();
            cores.dedup();
            assert_eq!(cores.len(), io.len(), "{io:?}");
        }
        // Every worker's CPU is on its own node.
        for s in &l.slots {
            assert_eq!(m.node_of(s.cpu), Some(s.node));
        }
    }

    #[test]
    fn four_nodes_and_not_enough_cpus() {
        let m = Machine::synthetic("numa:4 core:2 pu:1").unwrap();
        assert_eq!(m.nodes.len(), 4);
        let l = Layout::per_node(&m, 1, 0).unwrap();
        assert_eq!(
            (0..4)
                .map(|n| l.workers(Role::ServerIo, n).len())
                .sum::<usize>(),
            4
        );
        assert_eq!(
            Layout::per_node(&m, 2, 1),
            Err(LayoutError::NotEnoughCpus {
                node: 0,
                available: 2,
                wanted: 3
            })
        );
    }

    #[test]
    fn the_seeds_explicit_layout() {
        // 0-3 server I/O, 4-7 client I/O, the rest application, on a 16-CPU two-node machine.
        let m = Machine::synthetic("pack:2 numa:1 core:8 pu:1").unwrap();
        let l = Layout::explicit(&m, &[0, 1, 2, 3], &[4, 5, 6, 7], &[], true).unwrap();
        assert_eq!(l.slots.len(), 16);
        assert_eq!(
            l.slots
                .iter()
                .filter(|s| s.role == Role::ServerIo)
                .map(|s| s.cpu)
                .collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(
            l.slots
                .iter()
                .filter(|s| s.role == Role::ClientIo)
                .map(|s| s.cpu)
                .collect::<Vec<_>>(),
            [4, 5, 6, 7]
        );
        assert_eq!(l.slots.iter().filter(|s| s.role == Role::App).count(), 8);
        assert_eq!(
            Layout::explicit(&m, &[0], &[0], &[], false),
            Err(LayoutError::Overlap(0))
        );
        assert_eq!(
            Layout::explicit(&m, &[99], &[], &[], false),
            Err(LayoutError::NoSuchCpu(99))
        );
    }

    #[test]
    fn bad_descriptions_are_errors() {
        assert!(Machine::synthetic("not a topology").is_err());
    }
}
