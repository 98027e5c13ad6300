//! The reactor as the actor core's `Driver`: wakes, and a worker serving I/O while parked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use sinew_actors::{Driver, System};
use sinew_transports::{Backend, Event, IoDriver, Reactor, Token};

const BACKENDS: [Backend; 2] = [Backend::Uring, Backend::Mio];

#[test]
fn unpark_wakes_a_driver_parked_without_timeout() {
    for backend in BACKENDS {
        if !backend.is_available() {
            continue;
        }
        let (unparker_tx, unparker_rx) = mpsc::channel();
        let (woke_tx, woke_rx) = mpsc::channel();
        let parked = std::thread::spawn(move || {
            let reactor = Reactor::new(backend).expect("reactor");
            let mut driver = IoDriver::new(reactor, |_, c| panic!("no I/O expected: {c:?}"));
            unparker_tx.send(driver.unparker()).expect("send unparker");
            // An unpark before the park must not be lost: this returns either way.
            driver.park(None);
            woke_tx.send(()).expect("woke");
            assert!(!driver.poll(), "nothing to do after the wake");
        });
        let unparker = unparker_rx.recv().expect("unparker");
        unparker.unpark();
        woke_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("driver woke up");
        parked.join().expect("parked thread");
    }
}

#[test]
fn worker_parked_in_reactor_serves_connections() {
    for backend in BACKENDS {
        if !backend.is_available() {
            continue;
        }
        let (addr_tx, addr_rx) = mpsc::channel();
        let addr_tx = Mutex::new(addr_tx);
        let system = System::builder()
            .workers(1)
            .driver(move |_worker| {
                let mut reactor = Reactor::new(backend).expect("reactor on the worker thread");
                let l = reactor
                    .listen("127.0.0.1:0".parse().expect("addr"), &[])
                    .expect("listen");
                let addr = reactor.local_addr(l).expect("addr");
                reactor.accept(l, Token(0));
                if let Ok(tx) = addr_tx.lock() {
                    tx.send(addr).expect("send addr");
                }
                // An echo server driven entirely from completions on the worker.
                Box::new(IoDriver::new(reactor, |r, c| match c.event {
                    Event::Accepted { result: Ok(s), .. } => {
                        r.borrow_mut()
                            .recv(s, BytesMut::with_capacity(1024), Token(1))
                    }
                    Event::Received {
                        socket,
                        buf,
                        result: Ok(n),
                    } if n > 0 => {
                        let mut r = r.borrow_mut();
                        r.send(socket, buf.freeze(), Token(2));
                        r.recv(socket, BytesMut::with_capacity(1024), Token(1));
                    }
                    Event::Received { socket, .. } => r.borrow_mut().close(socket, Token(3)),
                    _ => {}
                }))
            })
            .build()
            .expect("system");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("listener address");
        let mut s = TcpStream::connect(addr).expect("connect");
        for round in 0..3u8 {
            let msg = [round; 100];
            s.write_all(&msg).expect("write");
            let mut back = [0u8; 100];
            s.read_exact(&mut back).expect("echo");
            assert_eq!(back, msg);
        }
        drop(s);
        system.shutdown(Duration::from_secs(5));
    }
}
