//! Layouts bind for real: a system pinned to a layout computed from this machine's topology
//! runs each worker on exactly its CPU (read back with sched_getaffinity).

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{Actor, Context, SpawnOptions, System};
use sinew_io_actors::{Layout, Machine, Role};

struct Where(mpsc::Sender<(usize, Vec<usize>)>);

impl Actor for Where {
    type Msg = ();
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        // Called from the pinned worker thread: the CPUs this thread may run on.
        let allowed = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        self.0
            .send((ctx.worker_index(), allowed))
            .expect("test waits");
    }
}

#[test]
fn workers_are_bound_to_the_layouts_cpus() {
    let machine = Machine::detect().expect("topology");
    assert!(machine.cpus().count() >= 1);
    let layout = Layout::per_node(&machine, 1, 0).expect("layout");
    assert_eq!(
        layout
            .slots
            .iter()
            .filter(|s| s.role == Role::ServerIo)
            .count(),
        machine.nodes.len()
    );
    let pins = layout.pin_list();
    let sys = System::builder()
        .workers(pins.len())
        .pin_to(pins.clone())
        .build()
        .expect("system");
    let (tx, rx) = mpsc::channel();
    for (w, cpu) in pins.iter().enumerate() {
        let a = sys
            .spawn_with(Where(tx.clone()), SpawnOptions::on_worker(w))
            .expect("spawn");
        a.try_send(()).expect("send");
        let (worker, allowed) = rx.recv_timeout(Duration::from_secs(10)).expect("answer");
        assert_eq!(worker, w);
        assert_eq!(allowed, vec![*cpu], "worker {w} runs only on CPU {cpu}");
    }
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}
