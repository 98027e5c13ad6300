//! The fault controls a simulation harness drives: resets between two hosts, one-way clogs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::SimNet;
use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::Error;
use crate::reactor::Reactor;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

/// Polls every reactor; when none has anything, moves the network to its next event. Returns
/// the completions of the first poll that had any, with the reactor's index; empty when the
/// network is idle or a minute of virtual time passed without any (a segment retransmitted
/// into a lasting partition keeps the network busy forever).
fn next(net: &SimNet, hosts: &mut [Reactor]) -> Vec<(usize, Completion)> {
    let limit = net.now() + Duration::from_secs(60);
    let mut out = Vec::new();
    loop {
        for (i, r) in hosts.iter_mut().enumerate() {
            let mut ready = Vec::new();
            r.poll(&mut ready, Some(Duration::ZERO)).expect("poll");
            out.extend(ready.into_iter().map(|c| (i, c)));
        }
        if !out.is_empty() || net.now() > limit || net.step().is_none() {
            return out;
        }
    }
}

/// Host 0 (10.0.0.1) listens; the other hosts connect. Returns the client sockets, and the
/// server side of each connection.
fn connected(net: &SimNet, hosts: &mut [Reactor]) -> (Vec<SocketId>, Vec<SocketId>) {
    let l = hosts[0]
        .listen(SocketAddr::new(ip(1), 80), &[])
        .expect("listen");
    hosts[0].accept(l, Token(0));
    let clients: Vec<SocketId> = (1..hosts.len())
        .map(|i| {
            hosts[i]
                .connect(SocketAddr::new(ip(1), 80), &[], Token(i as u64))
                .expect("connect")
        })
        .collect();
    let (mut up, mut servers) = (0, Vec::new());
    while up < clients.len() || servers.len() < clients.len() {
        let got = next(net, hosts);
        assert!(!got.is_empty(), "the network went idle before connecting");
        for (_, c) in got {
            match c.event {
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    up += 1;
                }
                Event::Accepted { result, .. } => servers.push(result.expect("accepted")),
                _ => {}
            }
        }
    }
    (clients, servers)
}

#[test]
fn reset_between_two_hosts_leaves_their_other_connections_alone() {
    let net = SimNet::new(1);
    let mut hosts: Vec<Reactor> = (1..=3).map(|i| net.reactor(ip(i))).collect();
    let (clients, _) = connected(&net, &mut hosts);
    assert_eq!(
        net.reset_between(ip(1), ip(2)),
        2,
        "both ends of the 1-2 connection"
    );
    assert_eq!(net.reset_between(ip(1), ip(2)), 0, "already reset");
    for (i, &s) in clients.iter().enumerate() {
        hosts[i + 1].recv(s, BytesMut::with_capacity(64), Token(9));
    }
    let got = next(&net, &mut hosts);
    let reset: Vec<usize> = got
        .iter()
        .filter(|(_, c)| {
            matches!(
                &c.event,
                Event::Received {
                    result: Err(Error::ConnectionReset),
                    ..
                }
            )
        })
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(reset, vec![1], "only host 2's receive fails: {got:?}");
    // Host 3's connection still carries data.
    hosts[2].send(clients[1], Bytes::from_static(b"hi"), Token(3));
    let sent = next(&net, &mut hosts);
    assert!(sent
        .iter()
        .any(|(i, c)| *i == 2 && matches!(c.event, Event::Sent { result: Ok(_), .. })));
}

#[test]
fn a_clog_blocks_one_direction_until_unclogged() {
    let net = SimNet::new(2);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let (clients, servers) = connected(&net, &mut hosts);
    let (client, server) = (clients[0], servers[0]);
    net.partition_one_way(ip(2), ip(1));
    assert_eq!(net.partitions(), vec![(ip(2), ip(1))]);
    assert!(net.is_partitioned(ip(2), ip(1)) && !net.is_partitioned(ip(1), ip(2)));
    // Read on the server side and send from the (clogged) client.
    hosts[0].recv(server, BytesMut::with_capacity(64), Token(7));
    hosts[1].send(client, Bytes::from_static(b"ping"), Token(8));
    // Five seconds of retransmissions into the clog: the client's send completes (the data
    // is in its send buffer), the server reads nothing.
    net.advance(Duration::from_secs(5));
    for (i, r) in hosts.iter_mut().enumerate() {
        let mut ready = Vec::new();
        r.poll(&mut ready, Some(Duration::ZERO)).expect("poll");
        for c in ready {
            assert!(
                !(i == 0 && matches!(c.event, Event::Received { .. })),
                "data crossed a clogged direction"
            );
        }
    }
    net.heal_one_way(ip(2), ip(1));
    assert!(net.partitions().is_empty());
    let got = loop {
        let got = next(&net, &mut hosts);
        assert!(!got.is_empty(), "the network went idle");
        if let Some(n) = got.iter().find_map(|(i, c)| match &c.event {
            Event::Received { result: Ok(n), .. } if *i == 0 => Some(*n),
            _ => None,
        }) {
            break n;
        }
    };
    assert_eq!(got, 4);
}
