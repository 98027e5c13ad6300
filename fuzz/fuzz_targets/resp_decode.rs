//! Feeds arbitrary bytes, fragmented as the first input byte says, to the RESP server codec
//! (answering every command out of order, pushing, draining output) and to the RESP client
//! codec (with a few commands outstanding). Properties checked: no panic; buffered input
//! stays bounded while the server wants to read; the server emits nothing after it said
//! `should_close`; everything the server writes decodes as valid RESP; every decoded command
//! survives re-encoding; every client request gets exactly one event, also on EOF.

#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sinew_protocols::protocol::{ClientEvent, RequestId, ServerEvent};
use sinew_protocols::resp::{
    decode_value, encode_command, Command, Resp, RespClientCodec, RespLimits, RespServerCodec,
    Value,
};

fn limits() -> RespLimits {
    RespLimits {
        max_bulk_len: 256,
        max_array_len: 16,
        max_depth: 8,
        max_inline_len: 128,
        max_pipeline: 8,
        max_buffered_output: 4096,
    }
}

/// An answer that depends on the command, so HELLO switches versions and replies vary.
fn answer(cmd: &Command) -> Value {
    if cmd.is("hello") {
        return Value::Map(vec![(Value::bulk("proto"), Value::int(3))]);
    }
    if cmd.is("subscribe") {
        let confirm = |c: &Bytes| {
            Value::push(vec![
                Value::bulk("subscribe"),
                Value::Bulk(c.clone()),
                Value::int(1),
            ])
        };
        return Value::Frames(cmd.args()[1..].iter().map(confirm).collect());
    }
    match cmd.len() % 4 {
        0 => Value::Array(cmd.args().iter().cloned().map(Value::Bulk).collect()),
        1 => Value::error("ERR unknown command"),
        2 => Value::Set(vec![Value::Null, Value::Double(1.5), Value::Boolean(true)]),
        _ => Value::Bulk(cmd.name().to_vec().into()),
    }
}

/// Everything the server wrote must decode as RESP replies.
fn check_output(wire: &mut BytesMut) {
    let big = RespLimits::default();
    loop {
        match decode_value(wire, &big) {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => panic!("server wrote invalid RESP ({e}): {wire:?}"),
        }
    }
}

fn server(step: usize, ctl: u8, input: &[u8]) {
    let now = Instant::now();
    let config = Resp {
        limits: limits(),
        ..Resp::default()
    };
    let mut conn = RespServerCodec::new(config, now);
    let mut buf = BytesMut::new();
    let mut wire = BytesMut::new();
    let mut pending: Vec<(RequestId, Command)> = Vec::new();
    let mut closed = false;
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(ev) = conn.poll_event(&mut buf, now) {
            assert!(!closed, "event after should_close");
            match ev {
                ServerEvent::Request { id, request } => {
                    assert!(!request.is_empty());
                    // Re-encoded, a command decodes to itself.
                    let mut again = BytesMut::new();
                    encode_command(&request, &mut again);
                    let mut other = RespServerCodec::new(Resp::default(), now);
                    match other.poll_event(&mut again, now) {
                        Some(ServerEvent::Request { request: r, .. }) => assert_eq!(r, request),
                        other => panic!("re-encoded command did not decode: {other:?}"),
                    }
                    pending.push((id, request));
                }
                ServerEvent::Error { .. } => {}
                other => panic!("unexpected event {other:?}"),
            }
        }
        // Answer in reverse order to exercise the ordered output queue.
        while let Some((id, cmd)) = pending.pop() {
            conn.send_response(id, answer(&cmd)).expect("known request");
        }
        if ctl & 0x40 != 0 {
            let _ = conn.send_push(Value::push(vec![
                Value::bulk("message"),
                Value::bulk("c"),
                Value::bulk("m"),
            ]));
        }
        while let Some(b) = conn.poll_transmit(now) {
            assert!(!closed, "output after should_close");
            wire.extend_from_slice(&b);
        }
        check_output(&mut wire);
        if conn.wants_read() {
            assert!(
                buf.len() <= 8 * 1024 + step,
                "input buffer grew past the limits"
            );
        }
        if conn.should_close() {
            closed = true;
        }
    }
    if ctl & 1 == 0 {
        assert!(conn.on_eof().is_none());
    } else {
        conn.shutdown();
    }
    while let Some((id, cmd)) = pending.pop() {
        let _ = conn.send_response(id, answer(&cmd));
    }
    let _ = conn.on_timeout(now + Duration::from_secs(3600));
    while let Some(b) = conn.poll_transmit(now) {
        wire.extend_from_slice(&b);
    }
    check_output(&mut wire);
    assert!(conn.should_close(), "a finished connection must close");
}

fn client(step: usize, ctl: u8, input: &[u8]) {
    let now = Instant::now();
    let config = Resp {
        limits: limits(),
        version: if ctl & 0x80 != 0 {
            sinew_protocols::resp::RespVersion::Resp3
        } else {
            sinew_protocols::resp::RespVersion::Resp2
        },
        ..Resp::default()
    };
    let mut conn = RespClientCodec::new(config, now);
    let outstanding = usize::from((ctl >> 1) & 7);
    for i in 0..outstanding {
        let cmd = match i % 3 {
            0 => Command::new("GET").arg("k"),
            1 => Command::new("SUBSCRIBE").arg("a").arg("b"),
            _ => Command::new("UNSUBSCRIBE"),
        };
        conn.send_request(cmd).expect("fresh connection");
    }
    while conn.poll_transmit(now).is_some() {}
    let mut answered = vec![0u8; outstanding];
    let mut count = |ev: ClientEvent<Value, (), _>| match ev {
        ClientEvent::Response { id, .. } | ClientEvent::Error { id: Some(id), .. } => {
            answered[id.0 as usize] += 1;
        }
        _ => {}
    };
    let mut buf = BytesMut::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(ev) = conn.poll_event(&mut buf, now) {
            count(ev);
        }
    }
    conn.on_eof();
    while let Some(ev) = conn.poll_event(&mut buf, now) {
        count(ev);
    }
    assert!(
        answered.iter().all(|&n| n == 1),
        "each request answered once: {answered:?}"
    );
    assert!(conn.should_close());
    assert_eq!(conn.in_flight(), 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(ctl & 0x3f) + 1;
    server(step, ctl, input);
    client(step, ctl, input);
    // The standalone decoder, on the raw input.
    let mut buf = BytesMut::from(input);
    while let Ok(Some(_)) = decode_value(&mut buf, &limits()) {}
});
