//! Service discovery: where a destination's endpoints are. Static lists here; periodic DNS
//! re-resolution, etcd, Consul or Kubernetes implement the same trait.

use std::net::{SocketAddr, ToSocketAddrs};

/// A source of endpoints for one destination.
pub trait Discover: Send + 'static {
    /// The current endpoints. Called periodically by the pool; may block (run it on a worker's
    /// executor or a dedicated actor, not in a handler).
    fn endpoints(&mut self) -> std::io::Result<Vec<SocketAddr>>;
}

/// A fixed list.
#[derive(Debug, Clone)]
pub struct StaticList(pub Vec<SocketAddr>);

impl Discover for StaticList {
    fn endpoints(&mut self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(self.0.clone())
    }
}

/// Resolves `host:port` through the system resolver each time it is asked (periodic
/// re-resolution is the caller's interval).
#[derive(Debug, Clone)]
pub struct Dns(pub String);

impl Discover for Dns {
    fn endpoints(&mut self) -> std::io::Result<Vec<SocketAddr>> {
        let mut v: Vec<SocketAddr> = self.0.to_socket_addrs()?.collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dns_sources() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(StaticList(vec![a]).endpoints().unwrap(), vec![a]);
        let resolved = Dns("localhost:8080".into()).endpoints().unwrap();
        assert!(resolved
            .iter()
            .all(|s| s.port() == 8080 && s.ip().is_loopback()));
        assert!(Dns("no-such-host.invalid:1".into()).endpoints().is_err());
    }
}
