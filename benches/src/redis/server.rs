//! The Sinew Redis server as a bench process: `sinew::redis::RedisServer` (the server of
//! `examples/redis_server.rs`) with one shard on one pinned worker.

use std::net::SocketAddr;

use sinew::redis::{RedisConfig, RedisServer};
use sinew_actors::System;
use sinew_io_actors::io_driver;
use sinew_transports::Backend;

/// Serves RESP on `addr` with one worker parked in a `backend` reactor and one shard on that
/// worker, until killed. The worker is pinned to the first core this process may use (the
/// bench starts it pinned to the server core).
pub fn serve(backend: Backend, addr: SocketAddr) -> Result<(), String> {
    let system = System::builder()
        .workers(1)
        .pin_to(vec![first_allowed_cpu()?])
        .try_driver(io_driver(backend))
        .build()
        .map_err(|e| format!("sinew system on {backend}: {e}"))?;
    let server = RedisServer::start(
        &system.handle(),
        addr,
        0..1,
        RedisConfig {
            shards: 1,
            ..RedisConfig::default()
        },
    )
    .map_err(|e| format!("serve RESP on {addr}: {e}"))?;
    eprintln!(
        "[redis] sinew server on {backend}: {} ({} shard)",
        server.addr(),
        server.shards()
    );
    system.join();
    Ok(())
}

/// The first cpu in this process's affinity mask.
pub fn first_allowed_cpu() -> Result<usize, String> {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.first().map(|c| c.id))
        .ok_or_else(|| "cannot read this process's cpu affinity".to_string())
}
