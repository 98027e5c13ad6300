//! Connection-level tests: the server and client codecs driven with byte slices and made-up
//! instants; bad input (garbage, huge lengths, deep nesting, unterminated lines); pipelining,
//! HELLO, pushes, pub/sub; and proptest round trips (values through the encoder and the
//! client decoder, commands through the client encoder and the server decoder, in arbitrary
//! chunkings).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::{
    ClientCodec, ClientEvent, ClientProtocol, Protocol, ProtocolTimeouts, RequestId, ServerCodec,
    ServerEvent, ServerProtocol, TimeoutKind,
};

// ---------------------------------------------------------------------------------------
// Helpers

fn config(limits: RespLimits) -> Resp {
    Resp {
        limits,
        ..Resp::default()
    }
}

fn server_with(limits: RespLimits) -> (RespServerCodec, Instant) {
    let now = Instant::now();
    (RespServerCodec::new(config(limits), now), now)
}

fn server() -> (RespServerCodec, Instant) {
    server_with(RespLimits::default())
}

fn events(conn: &mut RespServerCodec, buf: &mut BytesMut, now: Instant) -> Vec<RespServerEvent> {
    let mut out = Vec::new();
    while let Some(e) = conn.poll_event(buf, now) {
        out.push(e);
        assert!(out.len() < 100_000, "event loop does not terminate");
    }
    out
}

fn feed(conn: &mut RespServerCodec, input: &[u8], now: Instant) -> Vec<RespServerEvent> {
    let mut buf = BytesMut::from(input);
    events(conn, &mut buf, now)
}

fn output(conn: &mut RespServerCodec, now: Instant) -> String {
    let mut wire = Vec::new();
    while let Some(b) = conn.poll_transmit(now) {
        wire.extend_from_slice(&b);
    }
    String::from_utf8_lossy(&wire).into_owned()
}

fn requests(evs: &[RespServerEvent]) -> Vec<(RequestId, Command)> {
    evs.iter()
        .filter_map(|e| match e {
            ServerEvent::Request { id, request } => Some((*id, request.clone())),
            _ => None,
        })
        .collect()
}

fn names(evs: &[RespServerEvent]) -> Vec<String> {
    requests(evs)
        .iter()
        .map(|(_, c)| {
            c.args()
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn errors(evs: &[RespServerEvent]) -> Vec<RespError> {
    evs.iter()
        .filter_map(|e| match e {
            ServerEvent::Error { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// Feeds `input` and expects exactly `error`, answered with `reply`, then a close.
fn assert_protocol_error(input: &[u8], limits: RespLimits, error: RespError, reply: &str) {
    let (mut c, now) = server_with(limits);
    let evs = feed(&mut c, input, now);
    assert_eq!(
        errors(&evs),
        vec![error],
        "{:?}",
        String::from_utf8_lossy(input)
    );
    assert!(!c.wants_read());
    assert!(!c.should_close(), "the error reply is not flushed yet");
    assert_eq!(output(&mut c, now), reply);
    assert!(c.should_close());
}

fn client_with(cfg: Resp) -> (RespClientCodec, Instant) {
    let now = Instant::now();
    (RespClientCodec::new(cfg, now), now)
}

fn client() -> (RespClientCodec, Instant) {
    client_with(Resp::default())
}

fn client_events(
    conn: &mut RespClientCodec,
    buf: &mut BytesMut,
    now: Instant,
) -> Vec<RespClientEvent> {
    let mut out = Vec::new();
    while let Some(e) = conn.poll_event(buf, now) {
        out.push(e);
        assert!(out.len() < 100_000, "event loop does not terminate");
    }
    out
}

fn client_feed(conn: &mut RespClientCodec, input: &[u8], now: Instant) -> Vec<RespClientEvent> {
    let mut buf = BytesMut::from(input);
    client_events(conn, &mut buf, now)
}

fn client_output(conn: &mut RespClientCodec, now: Instant) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(b) = conn.poll_transmit(now) {
        wire.extend_from_slice(&b);
    }
    wire
}

fn response(id: u64, value: Value) -> RespClientEvent {
    ClientEvent::Response {
        id: RequestId(id),
        response: value,
    }
}

fn push(value: Value) -> RespClientEvent {
    ClientEvent::Push { message: value }
}

fn bulk(s: &str) -> Value {
    Value::bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn encode(v: &Value, version: RespVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode_value(v, version, &mut out);
    out
}

/// Decodes exactly one reply with the client's scanner and decoder.
fn decode_one(wire: &[u8]) -> Result<Value, RespError> {
    let mut buf = BytesMut::from(wire);
    let v = decode_value(&mut buf, &RespLimits::default())?.expect("complete");
    assert!(buf.is_empty(), "one frame");
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Server: decoding

#[test]
fn multibulk_and_inline_commands() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\nping\r\nset a \"b c\"\nGET 'x y'\r\n",
        now,
    );
    let reqs = requests(&evs);
    assert_eq!(reqs.len(), 4);
    assert_eq!(
        reqs[0].1,
        Command::new("SET").arg(&b"k\r\n"[..]).arg(Bytes::new())
    );
    assert_eq!(reqs[1].1, Command::new("ping"));
    assert_eq!(reqs[2].1, Command::new("set").arg("a").arg("b c"));
    assert_eq!(reqs[3].1, Command::new("GET").arg("x y"));
    let ids: Vec<_> = reqs.iter().map(|(id, _)| id.0).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    assert!(c.wants_read());
}

#[test]
fn arguments_are_slices_of_the_receive_buffer() {
    let (mut c, now) = server();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n"[..]);
    let range = buf.as_ptr_range();
    let evs = events(&mut c, &mut buf, now);
    let (_, cmd) = &requests(&evs)[0];
    for arg in cmd.args() {
        assert!(range.contains(&arg.as_ptr()), "argument was copied");
    }
}

#[test]
fn empty_commands_are_skipped() {
    let (mut c, now) = server();
    let evs = feed(&mut c, b"*0\r\n*-1\r\n\r\n   \t \r\n\nPING\r\n", now);
    assert_eq!(names(&evs), ["PING"]);
    assert_eq!(requests(&evs)[0].0, RequestId(0));
}

#[test]
fn commands_split_at_every_byte_boundary() {
    let input: &[u8] =
        b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\nPING x\r\n*1\r\n$4\r\nPING\r\n*0\r\nset k \"v\"\r\n";
    let expected = ["ECHO a\r\nb", "PING x", "PING", "set k v"];
    for split in 0..=input.len() {
        let (mut c, now) = server();
        let mut buf = BytesMut::from(&input[..split]);
        let mut evs = events(&mut c, &mut buf, now);
        buf.extend_from_slice(&input[split..]);
        evs.extend(events(&mut c, &mut buf, now));
        assert_eq!(names(&evs), expected, "split at {split}");
        assert!(buf.is_empty());
    }
    // And one byte at a time.
    let (mut c, now) = server();
    let mut buf = BytesMut::new();
    let mut evs = Vec::new();
    for &b in input {
        buf.extend_from_slice(&[b]);
        evs.extend(events(&mut c, &mut buf, now));
    }
    assert_eq!(names(&evs), expected);
}

// ---------------------------------------------------------------------------------------
// Server: bad input

#[test]
fn protocol_errors_use_redis_wording_and_close() {
    let l = RespLimits::default();
    assert_protocol_error(
        b"*1\r\n$4294967296\r\n",
        l,
        RespError::InvalidBulkLength,
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        b"*1\r\n$-5\r\n",
        l,
        RespError::InvalidBulkLength,
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        b"*1\r\n$1x\r\n",
        l,
        RespError::InvalidBulkLength,
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        b"*abc\r\n",
        l,
        RespError::InvalidMultibulkLength,
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        b"*2000000\r\n",
        l,
        RespError::InvalidMultibulkLength,
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        b"*1\rX",
        l,
        RespError::InvalidMultibulkLength,
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        b"*1\r\nxyz\r\n",
        l,
        RespError::ExpectedBulk { got: b'x' },
        "-ERR Protocol error: expected '$', got 'x'\r\n",
    );
    assert_protocol_error(
        b"*1\r\n$3\r\nabcde",
        l,
        RespError::BadTerminator,
        "-ERR Protocol error: bulk string not terminated by CRLF\r\n",
    );
    assert_protocol_error(
        b"SET k \"unterminated\r\n",
        l,
        RespError::UnbalancedQuotes,
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    assert_protocol_error(
        &[b'a'; 70_000],
        l,
        RespError::InlineTooLong,
        "-ERR Protocol error: too big inline request\r\n",
    );
    // A length line that can no longer become valid is refused before its CRLF arrives.
    assert_protocol_error(
        &[b"*1\r\n$".as_slice(), &[b'9'; 40]].concat(),
        l,
        RespError::InvalidBulkLength,
        "-ERR Protocol error: invalid bulk length\r\n",
    );
}

#[test]
fn huge_bulk_length_fails_at_once_without_buffering() {
    let (mut c, now) = server();
    let mut buf = BytesMut::from(&b"*1\r\n$4294967296\r\n"[..]);
    let evs = events(&mut c, &mut buf, now);
    assert_eq!(errors(&evs), [RespError::InvalidBulkLength]);
    assert!(!c.wants_read(), "the connection stops reading");
    // What follows is never looked at, and no event comes of it.
    buf.extend_from_slice(&vec![b'x'; 1 << 20]);
    assert!(events(&mut c, &mut buf, now).is_empty());
    assert_eq!(
        output(&mut c, now),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(c.should_close());

    // A large bulk that is within the limit waits for its data without reserving for it.
    let (mut c, now) = server();
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"*1\r\n$536870912\r\nabc");
    assert!(events(&mut c, &mut buf, now).is_empty());
    assert!(buf.capacity() < 1024, "the decoder reserved memory");
    assert!(c.wants_read());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let (mut c, now) = server();
    let evs = feed(&mut c, &b"*1\r\n".repeat(100_000), now);
    assert_eq!(errors(&evs), [RespError::ExpectedBulk { got: b'*' }]);
    assert_eq!(
        output(&mut c, now),
        "-ERR Protocol error: expected '$', got '*'\r\n"
    );
    assert!(c.should_close());
}

#[test]
fn garbage_gets_an_error_or_waits_bounded() {
    // Pseudo-random bytes (SplitMix64): whatever they decode to, the codec must stay
    // bounded and end in a request, an error reply or a wait for more.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let limits = RespLimits {
        max_inline_len: 1024,
        ..RespLimits::default()
    };
    for round in 0..200 {
        let len = 1 + (next() % 4096) as usize;
        let mut garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            garbage[0] = b'*';
        }
        let (mut c, now) = server_with(limits);
        let mut buf = BytesMut::from(&garbage[..]);
        let evs = events(&mut c, &mut buf, now);
        for (id, _) in requests(&evs) {
            c.send_response(id, Value::error("ERR unknown command"))
                .unwrap();
        }
        let _ = output(&mut c, now);
        if c.wants_read() {
            assert!(buf.len() <= limits.max_inline_len + 2);
        }
        let _ = c.on_eof();
        let _ = output(&mut c, now);
        assert!(c.should_close(), "round {round}");
    }
}

#[test]
fn unterminated_inline_command_closes_cleanly() {
    let (mut c, now) = server();
    assert!(feed(&mut c, b"PING", now).is_empty());
    assert!(c.wants_read());
    assert_eq!(c.on_eof(), None);
    assert_eq!(output(&mut c, now), "");
    assert!(c.should_close());

    // A partial multibulk too.
    let (mut c, now) = server();
    assert!(feed(&mut c, b"*2\r\n$3\r\nGET\r\n$1", now).is_empty());
    assert_eq!(c.on_eof(), None);
    assert!(c.should_close());
}

#[test]
fn limits_are_configurable() {
    let small = RespLimits {
        max_bulk_len: 4,
        max_array_len: 2,
        max_inline_len: 8,
        ..RespLimits::default()
    };
    let (mut c, now) = server_with(small);
    assert_eq!(
        names(&feed(
            &mut c,
            b"*2\r\n$4\r\nECHO\r\n$4\r\nabcd\r\nGET 1234\r\n",
            now
        )),
        ["ECHO abcd", "GET 1234"]
    );
    assert_protocol_error(
        b"*1\r\n$5\r\n",
        small,
        RespError::InvalidBulkLength,
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        b"*3\r\n",
        small,
        RespError::InvalidMultibulkLength,
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        b"GET 12345\r\n",
        small,
        RespError::InlineTooLong,
        "-ERR Protocol error: too big inline request\r\n",
    );
    assert_protocol_error(
        b"GET 12345",
        small,
        RespError::InlineTooLong,
        "-ERR Protocol error: too big inline request\r\n",
    );
}

#[test]
fn protocol_error_waits_behind_earlier_answers() {
    let (mut c, now) = server();
    let evs = feed(&mut c, b"PING\r\nPING\r\n*x\r\nPING\r\n", now);
    let reqs = requests(&evs);
    assert_eq!(reqs.len(), 2);
    assert_eq!(errors(&evs), [RespError::InvalidMultibulkLength]);
    assert_eq!(output(&mut c, now), "");
    c.send_response(reqs[1].0, Value::simple("PONG")).unwrap();
    assert_eq!(output(&mut c, now), "");
    assert!(!c.should_close());
    c.send_response(reqs[0].0, Value::simple("PONG")).unwrap();
    assert_eq!(
        output(&mut c, now),
        "+PONG\r\n+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(c.should_close());
}

// ---------------------------------------------------------------------------------------
// Server: pipelining, backpressure, HELLO, pushes, lifecycle

#[test]
fn pipelined_answers_leave_in_request_order_coalesced() {
    let (mut c, now) = server();
    let evs = feed(&mut c, &b"*1\r\n$4\r\nPING\r\n".repeat(5), now);
    let reqs = requests(&evs);
    assert_eq!(reqs.len(), 5);
    for (i, (id, _)) in reqs.iter().enumerate().rev() {
        c.send_response(*id, Value::int(i as i64)).unwrap();
        if i > 0 {
            assert!(!c.has_output(), "answer {i} must wait for answer 0");
        }
    }
    let first = c.poll_transmit(now).unwrap();
    assert_eq!(
        &first[..],
        b":0\r\n:1\r\n:2\r\n:3\r\n:4\r\n",
        "one coalesced buffer"
    );
    assert_eq!(c.poll_transmit(now), None);
    assert_eq!(
        c.send_response(reqs[0].0, Value::ok()),
        Err(RespError::UnknownRequest)
    );
    assert_eq!(
        c.send_response(RequestId(99), Value::ok()),
        Err(RespError::UnknownRequest)
    );
    assert!(!RespError::UnknownRequest.closes_connection());
}

#[test]
fn large_bulk_replies_are_not_copied() {
    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"GET big\r\n", now));
    let big = Bytes::from(vec![b'v'; 64 * 1024]);
    c.send_response(reqs[0].0, Value::Bulk(big.clone()))
        .unwrap();
    let head = c.poll_transmit(now).unwrap();
    assert_eq!(&head[..], b"$65536\r\n");
    let body = c.poll_transmit(now).unwrap();
    assert_eq!(body.as_ptr(), big.as_ptr(), "the payload was copied");
    assert_eq!(&c.poll_transmit(now).unwrap()[..], b"\r\n");
}

#[test]
fn pipeline_limit_is_backpressure() {
    let limits = RespLimits {
        max_pipeline: 2,
        ..RespLimits::default()
    };
    let (mut c, now) = server_with(limits);
    let mut buf = BytesMut::from(&b"PING\r\n".repeat(5)[..]);
    let evs = events(&mut c, &mut buf, now);
    assert_eq!(requests(&evs).len(), 2);
    assert!(!c.wants_read());
    assert_eq!(buf.len(), 3 * 6, "the rest stays unread");
    c.send_response(RequestId(0), Value::simple("PONG"))
        .unwrap();
    assert!(c.wants_read());
    let evs = events(&mut c, &mut buf, now);
    assert_eq!(requests(&evs)[0].0, RequestId(2));
    assert!(!c.wants_read());
}

#[test]
fn output_limit_is_backpressure() {
    let limits = RespLimits {
        max_buffered_output: 16,
        ..RespLimits::default()
    };
    let (mut c, now) = server_with(limits);
    let mut buf = BytesMut::from(&b"GET a\r\nGET b\r\n"[..]);
    let first = c.poll_event(&mut buf, now).unwrap();
    let ServerEvent::Request { id, .. } = first else {
        panic!()
    };
    c.send_response(id, bulk("0123456789abcdef")).unwrap();
    assert!(!c.wants_read());
    assert!(c.poll_event(&mut buf, now).is_none());
    assert!(!c.send_push(Value::push(vec![])), "pushes refused too");
    let _ = output(&mut c, now);
    assert!(c.wants_read());
    assert!(c.poll_event(&mut buf, now).is_some());
}

fn hello_map() -> Value {
    Value::Map(vec![
        (bulk("server"), bulk("sinew")),
        (bulk("proto"), Value::int(3)),
    ])
}

#[test]
fn hello_switches_encoding_from_its_own_reply_on() {
    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"GET a\r\nHELLO 3\r\nGET b\r\n", now));
    assert_eq!(c.version(), RespVersion::Resp2);
    // Out of order: GET b, then HELLO, then GET a.
    c.send_response(reqs[2].0, Value::Null).unwrap();
    c.send_response(reqs[1].0, hello_map()).unwrap();
    assert_eq!(c.version(), RespVersion::Resp2, "GET a is still unanswered");
    c.send_response(reqs[0].0, Value::Null).unwrap();
    assert_eq!(c.version(), RespVersion::Resp3);
    assert_eq!(
        output(&mut c, now),
        "$-1\r\n%2\r\n$6\r\nserver\r\n$5\r\nsinew\r\n$5\r\nproto\r\n:3\r\n_\r\n"
    );

    // A refused HELLO leaves the version alone; HELLO 2 and RESET switch back.
    let reqs = requests(&feed(&mut c, b"HELLO 4\r\nHELLO 2\r\nGET c\r\n", now));
    c.send_response(
        reqs[0].0,
        Value::error("NOPROTO unsupported protocol version"),
    )
    .unwrap();
    assert_eq!(c.version(), RespVersion::Resp3);
    c.send_response(reqs[1].0, Value::Map(vec![])).unwrap();
    c.send_response(reqs[2].0, Value::Null).unwrap();
    assert_eq!(c.version(), RespVersion::Resp2);
    assert_eq!(
        output(&mut c, now),
        "-NOPROTO unsupported protocol version\r\n*0\r\n$-1\r\n"
    );
    let reqs = requests(&feed(&mut c, b"hello 3\r\nreset\r\n", now));
    c.send_response(reqs[0].0, hello_map()).unwrap();
    c.send_response(reqs[1].0, Value::simple("RESET")).unwrap();
    assert_eq!(c.version(), RespVersion::Resp2);
}

#[test]
fn pushes_go_after_released_answers_and_before_missing_ones() {
    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"SUBSCRIBE a\r\nPING\r\n", now));
    let message = Value::push(vec![bulk("message"), bulk("a"), bulk("hi")]);
    assert!(
        c.send_push(message.clone()),
        "nothing answered yet: goes first"
    );
    c.send_response(reqs[1].0, Value::simple("PONG")).unwrap();
    let confirm = Value::push(vec![bulk("subscribe"), bulk("a"), Value::int(1)]);
    c.send_response(reqs[0].0, confirm).unwrap();
    assert!(c.send_push(message));
    assert_eq!(
        output(&mut c, now),
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n\
         *3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n+PONG\r\n\
         *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
    );
    // In RESP3 a push is a `>` frame.
    let reqs = requests(&feed(&mut c, b"HELLO 3\r\n", now));
    c.send_response(reqs[0].0, Value::Map(vec![])).unwrap();
    assert!(c.send_push(Value::push(vec![bulk("x")])));
    assert_eq!(output(&mut c, now), "%0\r\n>1\r\n$1\r\nx\r\n");
}

#[test]
fn multi_channel_subscribe_answers_with_frames() {
    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"SUBSCRIBE a b\r\n", now));
    assert!(Resp::default().needs_push(&reqs[0].1));
    let confirm = |ch: &str, n| Value::push(vec![bulk("subscribe"), bulk(ch), Value::int(n)]);
    c.send_response(
        reqs[0].0,
        Value::Frames(vec![confirm("a", 1), confirm("b", 2)]),
    )
    .unwrap();
    assert_eq!(
        output(&mut c, now),
        "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
    );
}

#[test]
fn quit_closes_after_its_answer() {
    let (mut c, now) = server();
    let evs = feed(&mut c, b"PING\r\nQUIT\r\nPING\r\n", now);
    assert_eq!(names(&evs), ["PING", "QUIT"], "nothing is read after QUIT");
    assert!(!c.wants_read());
    c.send_response(RequestId(1), Value::ok()).unwrap();
    assert!(!c.should_close());
    c.send_response(RequestId(0), Value::simple("PONG"))
        .unwrap();
    assert_eq!(output(&mut c, now), "+PONG\r\n+OK\r\n");
    assert!(c.should_close());
    assert!(!c.send_push(Value::push(vec![])));
}

#[test]
fn eof_and_shutdown_answer_in_flight_then_close() {
    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"PING\r\nPING\r\n", now));
    assert_eq!(c.on_eof(), None);
    assert!(!c.wants_read());
    assert!(!c.should_close());
    c.send_response(reqs[0].0, Value::simple("PONG")).unwrap();
    c.send_response(reqs[1].0, Value::simple("PONG")).unwrap();
    assert_eq!(output(&mut c, now), "+PONG\r\n+PONG\r\n");
    assert!(c.should_close());

    let (mut c, now) = server();
    let reqs = requests(&feed(&mut c, b"PING\r\n", now));
    c.shutdown();
    assert!(feed(&mut c, b"PING\r\n", now).is_empty());
    assert!(!c.should_close());
    c.send_response(reqs[0].0, Value::simple("PONG")).unwrap();
    assert_eq!(output(&mut c, now), "+PONG\r\n");
    assert!(c.should_close());
}

#[test]
fn idle_timeout_only_when_configured() {
    let (c, _) = server();
    assert_eq!(c.next_timeout(), None);

    let now = Instant::now();
    let cfg = Resp {
        timeouts: ProtocolTimeouts {
            idle: Some(Duration::from_secs(5)),
            ..ProtocolTimeouts::default()
        },
        ..Resp::default()
    };
    let mut c = RespServerCodec::new(cfg, now);
    assert_eq!(c.next_timeout(), Some(now + Duration::from_secs(5)));
    let reqs = requests(&feed(&mut c, b"PING\r\n", now));
    assert_eq!(c.next_timeout(), None, "busy");
    let later = now + Duration::from_secs(3);
    c.send_response(reqs[0].0, Value::simple("PONG")).unwrap();
    let _ = output(&mut c, later);
    assert_eq!(c.next_timeout(), Some(later + Duration::from_secs(5)));
    assert_eq!(c.on_timeout(later + Duration::from_secs(1)), None);
    assert_eq!(
        c.on_timeout(later + Duration::from_secs(5)),
        Some(TimeoutKind::Idle)
    );
    assert!(!c.wants_read());
    assert!(c.should_close());
}

#[test]
fn protocol_description() {
    let p = Resp::default();
    let info = p.info();
    assert_eq!(info.name, "RESP");
    assert_eq!(info.default_port, 6379);
    assert_eq!(info.multiplexing, crate::protocol::Multiplexing::Pipelined);
    assert_eq!(p.health_check_response(), Value::simple("PONG"));
    assert_eq!(p.health_check_request(), Some(Command::new("PING")));
    assert!(p.unavailable_response().is_error());
    assert_eq!(
        p.error_response(&RespError::InvalidBulkLength),
        Some(Value::error("ERR Protocol error: invalid bulk length"))
    );
    assert_eq!(RespVersion::default(), RespVersion::Resp2);
    assert_eq!(p.timeouts(), ProtocolTimeouts::default());
    let mut c = ServerProtocol::new_codec(&p, Instant::now());
    assert_eq!(
        ServerCodec::send_body_chunk(&mut c, RequestId(0), Bytes::new()),
        Err(RespError::StreamingNotSupported)
    );
}

// ---------------------------------------------------------------------------------------
// Client

#[test]
fn client_pipelines_and_matches_fifo() {
    let (mut c, now) = client();
    let a = c.send_request(Command::new("PING")).unwrap();
    let b = c.send_request(Command::new("GET").arg("k")).unwrap();
    assert_eq!((a, b), (RequestId(0), RequestId(1)));
    assert_eq!(c.in_flight(), 2);
    assert_eq!(
        client_output(&mut c, now),
        b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    );
    let evs = client_feed(&mut c, b"+PONG\r\n$-1\r\n", now);
    assert_eq!(
        evs,
        [response(0, Value::simple("PONG")), response(1, Value::Null)]
    );
    assert_eq!(c.in_flight(), 0);
    assert!(c.is_reusable());
    assert!(!c.should_close());

    // Error replies are ordinary responses.
    c.send_request(Command::new("FOO")).unwrap();
    let evs = client_feed(&mut c, b"-ERR unknown command 'FOO'\r\n", now);
    assert_eq!(
        evs,
        [response(2, Value::error("ERR unknown command 'FOO'"))]
    );
    assert!(c.is_reusable());
}

#[test]
fn client_decodes_replies_in_any_chunking() {
    let (mut c, now) = client();
    let wire: &[u8] = b"*3\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n$5\r\na\r\nbc\r\n+OK\r\n";
    for _ in 0..3 {
        c.send_request(Command::new("X")).unwrap();
    }
    let expected = vec![
        response(
            0,
            Value::array(vec![bulk("foo"), Value::Null, Value::int(7)]),
        ),
        response(1, bulk("a\r\nbc")),
        response(2, Value::ok()),
    ];
    let mut buf = BytesMut::new();
    let mut evs = Vec::new();
    for &b in wire {
        buf.extend_from_slice(&[b]);
        evs.extend(client_events(&mut c, &mut buf, now));
    }
    assert_eq!(evs, expected);
}

#[test]
fn client_negotiates_resp3_with_its_own_hello() {
    let cfg = Resp {
        version: RespVersion::Resp3,
        ..Resp::default()
    };
    let (mut c, now) = client_with(cfg);
    let id = c.send_request(Command::new("GET").arg("k")).unwrap();
    assert_eq!(id, RequestId(0));
    assert_eq!(c.in_flight(), 1, "the codec's HELLO is not counted");
    let wire = client_output(&mut c, now);
    assert!(wire.starts_with(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET"));
    let mut hello = encode(&hello_map(), RespVersion::Resp3);
    hello.extend_from_slice(b"_\r\n");
    let evs = client_feed(&mut c, &hello, now);
    assert_eq!(evs, [response(0, Value::Null)], "HELLO's reply is consumed");
    assert_eq!(c.version(), RespVersion::Resp3);

    // A server without HELLO: stay in RESP2 and carry on.
    let (mut c, now) = client_with(cfg);
    c.send_request(Command::new("GET").arg("k")).unwrap();
    let evs = client_feed(&mut c, b"-ERR unknown command 'HELLO'\r\n$-1\r\n", now);
    assert_eq!(evs, [response(0, Value::Null)]);
    assert_eq!(c.version(), RespVersion::Resp2);
    assert!(c.is_reusable());
}

#[test]
fn client_resp3_pushes() {
    let (mut c, now) = client();
    c.send_request(Command::new("GET").arg("k")).unwrap();
    let evs = client_feed(
        &mut c,
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nv\r\n",
        now,
    );
    assert_eq!(
        evs,
        [
            push(Value::push(vec![
                bulk("invalidate"),
                Value::array(vec![bulk("k")])
            ])),
            response(0, bulk("v")),
        ]
    );
    // A RESP3 SUBSCRIBE is confirmed with pushes: the first answers it.
    let id = c
        .send_request(Command::new("SUBSCRIBE").arg("a").arg("b"))
        .unwrap();
    assert!(!c.is_reusable());
    let evs = client_feed(
        &mut c,
        b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n\
          >3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n",
        now,
    );
    let confirm = |ch: &str, n| Value::push(vec![bulk("subscribe"), bulk(ch), Value::int(n)]);
    assert_eq!(
        evs,
        [
            response(id.0, confirm("a", 1)),
            push(confirm("b", 2)),
            push(Value::push(vec![bulk("message"), bulk("a"), bulk("hi")])),
        ]
    );
}

#[test]
fn client_resp2_pubsub_rule() {
    let (mut c, now) = client();
    let sub = c
        .send_request(Command::new("SUBSCRIBE").arg("a").arg("b"))
        .unwrap();
    let sub2 = c.send_request(Command::new("subscribe").arg("c")).unwrap();
    assert!(!c.is_reusable());
    let arr = |kind: &str, ch: &str, n| Value::array(vec![bulk(kind), bulk(ch), Value::int(n)]);
    let mut wire = BytesMut::new();
    for v in [
        arr("subscribe", "a", 1),
        arr("subscribe", "b", 2),
        arr("subscribe", "c", 3),
        Value::array(vec![bulk("message"), bulk("b"), bulk("hi")]),
    ] {
        encode_value(&v, RespVersion::Resp2, &mut wire);
    }
    let evs = client_feed(&mut c, &wire, now);
    assert_eq!(
        evs,
        [
            response(sub.0, arr("subscribe", "a", 1)),
            push(arr("subscribe", "b", 2)),
            response(sub2.0, arr("subscribe", "c", 3)),
            push(Value::array(vec![bulk("message"), bulk("b"), bulk("hi")])),
        ]
    );
    // PING in subscribed mode is an ordinary reply.
    let ping = c.send_request(Command::new("PING")).unwrap();
    let evs = client_feed(&mut c, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", now);
    assert_eq!(
        evs,
        [response(ping.0, Value::array(vec![bulk("pong"), bulk("")]))]
    );
    // UNSUBSCRIBE without channels: one confirmation per channel, the first answers it.
    let unsub = c.send_request(Command::new("UNSUBSCRIBE")).unwrap();
    let mut wire = BytesMut::new();
    for v in [
        arr("unsubscribe", "a", 2),
        arr("unsubscribe", "b", 1),
        arr("unsubscribe", "c", 0),
    ] {
        encode_value(&v, RespVersion::Resp2, &mut wire);
    }
    let evs = client_feed(&mut c, &wire, now);
    assert_eq!(
        evs,
        [
            response(unsub.0, arr("unsubscribe", "a", 2)),
            push(arr("unsubscribe", "b", 1)),
            push(arr("unsubscribe", "c", 0)),
        ]
    );
    assert!(c.is_reusable(), "no longer subscribed");
    // An unsubscribe confirmation answering nothing (the server dropped us) is a push...
    let evs = client_feed(
        &mut c,
        &encode(&arr("unsubscribe", "z", 0), RespVersion::Resp2),
        now,
    );
    assert_eq!(evs, [push(arr("unsubscribe", "z", 0))]);
    // ...but a "message"-looking array is an ordinary reply when not subscribed.
    let get = c.send_request(Command::new("LRANGE")).unwrap();
    let list = Value::array(vec![bulk("message"), bulk("x"), bulk("y")]);
    let evs = client_feed(&mut c, &encode(&list, RespVersion::Resp2), now);
    assert_eq!(evs, [response(get.0, list)]);
}

#[test]
fn client_malformed_input_fails_everything_once() {
    let (mut c, now) = client();
    for _ in 0..3 {
        c.send_request(Command::new("GET").arg("k")).unwrap();
    }
    let evs = client_feed(&mut c, b"+OK\r\n?garbage\r\n", now);
    assert_eq!(
        evs,
        [
            response(0, Value::ok()),
            ClientEvent::Error {
                id: None,
                error: RespError::InvalidType { byte: b'?' }
            },
            ClientEvent::Error {
                id: Some(RequestId(1)),
                error: RespError::ConnectionClosed
            },
            ClientEvent::Error {
                id: Some(RequestId(2)),
                error: RespError::ConnectionClosed
            },
        ]
    );
    assert!(c.should_close());
    assert!(!c.is_reusable());
    assert_eq!(
        c.send_request(Command::new("PING")),
        Err(RespError::ConnectionClosed)
    );
}

#[test]
fn client_bad_input_is_bounded() {
    for (input, error) in [
        (&b"$4294967296\r\n"[..], RespError::InvalidBulkLength),
        (b"*4294967296\r\n", RespError::InvalidMultibulkLength),
        (b"%-3\r\n", RespError::InvalidMultibulkLength),
        (b"$3\r\nabcdef", RespError::BadTerminator),
        (
            b"*?\r\n",
            RespError::Malformed("streamed aggregates are not supported".into()),
        ),
    ] {
        let (mut c, now) = client();
        c.send_request(Command::new("GET").arg("k")).unwrap();
        let mut buf = BytesMut::from(input);
        let first = c.poll_event(&mut buf, now);
        assert_eq!(first, Some(ClientEvent::Error { id: None, error }));
        // Nothing waited for the announced length; the rest is never read.
        buf.extend_from_slice(&vec![b'x'; 1 << 20]);
        assert_eq!(
            client_events(&mut c, &mut buf, now),
            [ClientEvent::Error {
                id: Some(RequestId(0)),
                error: RespError::ConnectionClosed
            }]
        );
        assert!(c.should_close());
    }
    // 100k nested arrays: refused at the depth limit, no recursion.
    let (mut c, now) = client();
    c.send_request(Command::new("X")).unwrap();
    let evs = client_feed(&mut c, &b"*1\r\n".repeat(100_000), now);
    assert_eq!(
        evs[0],
        ClientEvent::Error {
            id: None,
            error: RespError::TooDeep { limit: 64 }
        }
    );
    // At the limit itself the crate decodes it.
    let depth = RespLimits::default().depth();
    let mut nested = b"*1\r\n".repeat(depth);
    nested.extend_from_slice(b":1\r\n");
    let mut expected = Value::int(1);
    for _ in 0..depth {
        expected = Value::array(vec![expected]);
    }
    assert_eq!(decode_one(&nested), Ok(expected));
}

#[test]
fn hard_depth_cap_holds_on_a_small_stack() {
    // Even with max_depth above the cap, nesting stops at HARD_MAX_DEPTH; decoding does not
    // recurse, and dropping, cloning and encoding a value that deep fits in 256 KiB.
    let limits = RespLimits {
        max_depth: usize::MAX,
        ..RespLimits::default()
    };
    let depth = RespLimits::HARD_MAX_DEPTH;
    for kind in [
        &b"*1\r\n"[..],
        b"%1\r\n+k\r\n",
        b">1\r\n",
        b"|1\r\n+a\r\n:1\r\n*1\r\n",
    ] {
        let mut nested = kind.repeat(depth);
        nested.extend_from_slice(b"_\r\n");
        let wire = nested.clone();
        let small = std::thread::Builder::new().stack_size(256 * 1024);
        let ok = small
            .spawn(move || {
                let mut buf = BytesMut::from(&wire[..]);
                let v = decode_value(&mut buf, &limits).unwrap().unwrap();
                let copy = v.clone();
                let mut out = BytesMut::new();
                encode_value(&copy, RespVersion::Resp3, &mut out);
                copy == v && !out.is_empty()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(ok);
        let deeper = [kind, nested.as_slice()].concat();
        assert_eq!(
            decode_value(&mut BytesMut::from(&deeper[..]), &limits),
            Err(RespError::TooDeep { limit: depth })
        );
    }
}

#[test]
fn client_eof_fails_outstanding_requests() {
    let (mut c, now) = client();
    for _ in 0..3 {
        c.send_request(Command::new("GET").arg("k")).unwrap();
    }
    let mut buf = BytesMut::from(&b"$1\r\na\r\n$5\r\nab"[..]);
    let evs = client_events(&mut c, &mut buf, now);
    assert_eq!(evs, [response(0, bulk("a"))]);
    c.on_eof();
    assert!(!c.is_reusable());
    let evs = client_events(&mut c, &mut buf, now);
    assert_eq!(
        evs,
        [
            ClientEvent::Error {
                id: Some(RequestId(1)),
                error: RespError::UnexpectedEof
            },
            ClientEvent::Error {
                id: Some(RequestId(2)),
                error: RespError::ConnectionClosed
            },
        ]
    );
    assert!(c.should_close());

    // Clean EOF with nothing outstanding.
    let (mut c, now) = client();
    c.on_eof();
    assert!(client_feed(&mut c, b"", now).is_empty());
    assert!(c.should_close());
}

#[test]
fn client_response_timeout_fails_all_outstanding() {
    let now = Instant::now();
    let cfg = Resp {
        timeouts: ProtocolTimeouts {
            response: Some(Duration::from_secs(2)),
            ..ProtocolTimeouts::default()
        },
        ..Resp::default()
    };
    let mut c = RespClientCodec::new(cfg, now);
    assert_eq!(c.next_timeout(), None);
    c.send_request(Command::new("BLPOP")).unwrap();
    c.send_request(Command::new("PING")).unwrap();
    let _ = client_output(&mut c, now);
    assert_eq!(c.next_timeout(), Some(now + Duration::from_secs(2)));
    assert_eq!(c.on_timeout(now + Duration::from_secs(1)), None);
    assert_eq!(
        c.on_timeout(now + Duration::from_secs(2)),
        Some(TimeoutKind::Response)
    );
    let evs = client_feed(&mut c, b"+late\r\n", now);
    assert_eq!(
        evs,
        [
            ClientEvent::Error {
                id: Some(RequestId(0)),
                error: RespError::ResponseTimeout
            },
            ClientEvent::Error {
                id: Some(RequestId(1)),
                error: RespError::ResponseTimeout
            },
        ]
    );
    assert!(c.should_close());
}

#[test]
fn client_unsolicited_reply_and_quit() {
    let (mut c, now) = client();
    let evs = client_feed(&mut c, b"+OK\r\n", now);
    assert_eq!(
        evs,
        [ClientEvent::Error {
            id: None,
            error: RespError::UnsolicitedReply
        }]
    );
    assert!(c.should_close());

    let (mut c, now) = client();
    c.send_request(Command::new("QUIT")).unwrap();
    assert!(!c.is_reusable());
    assert_eq!(
        c.send_request(Command::new("PING")),
        Err(RespError::ConnectionClosed)
    );
    assert_eq!(
        client_feed(&mut c, b"+OK\r\n", now),
        [response(0, Value::ok())]
    );
    assert!(c.should_close());
    let p = Resp::default();
    let c: RespClientCodec = ClientProtocol::new_codec(&p, now);
    assert_eq!(ClientCodec::in_flight(&c), 0);
}

// ---------------------------------------------------------------------------------------
// Value decoding details

#[test]
fn decodes_every_resp3_type() {
    let cases: Vec<(&[u8], Value)> = vec![
        (b"+OK\r\n", Value::ok()),
        (b"-ERR x\r\n", Value::error("ERR x")),
        (b"!5\r\nERR y\r\n", Value::error("ERR y")),
        (b":-12\r\n", Value::int(-12)),
        (b"$-1\r\n", Value::Null),
        (b"*-1\r\n", Value::Null),
        (b"_\r\n", Value::Null),
        (b",3.25\r\n", Value::Double(3.25)),
        (b",inf\r\n", Value::Double(f64::INFINITY)),
        (b"#f\r\n", Value::Boolean(false)),
        (
            b"(123456789012345678901\r\n",
            Value::BigNumber(Bytes::from_static(b"123456789012345678901")),
        ),
        (
            b"=7\r\nmkd:abc\r\n",
            Value::Verbatim {
                format: *b"mkd",
                text: Bytes::from_static(b"abc"),
            },
        ),
        (b"*0\r\n", Value::array(vec![])),
        (
            b"~2\r\n:1\r\n:2\r\n",
            Value::Set(vec![Value::int(1), Value::int(2)]),
        ),
        (
            b"%2\r\n+b\r\n:1\r\n+a\r\n:2\r\n",
            Value::Map(vec![
                (Value::simple("b"), Value::int(1)),
                (Value::simple("a"), Value::int(2)),
            ]),
        ),
        (b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", bulk("v")),
        // Beyond what redis-protocol accepts: aggregate map keys, RESP2 nulls among RESP3
        // types, duplicate keys kept, errors that are not UTF-8, any verbatim format.
        (
            b"%2\r\n*0\r\n:1\r\n*0\r\n:2\r\n",
            Value::Map(vec![
                (Value::array(vec![]), Value::int(1)),
                (Value::array(vec![]), Value::int(2)),
            ]),
        ),
        (
            b"*2\r\n~1\r\n:1\r\n$-1\r\n",
            Value::array(vec![Value::Set(vec![Value::int(1)]), Value::Null]),
        ),
        (
            b"*1\r\n-ERR \xff\r\n",
            Value::array(vec![Value::Error(Bytes::from_static(b"ERR \xff"))]),
        ),
        (
            b"=5\r\nraw:x\r\n",
            Value::Verbatim {
                format: *b"raw",
                text: Bytes::from_static(b"x"),
            },
        ),
        (
            b"*2\r\n,1.5\r\n=6\r\ntxt:hi\r\n",
            Value::array(vec![
                Value::Double(1.5),
                Value::Verbatim {
                    format: *b"txt",
                    text: Bytes::from_static(b"hi"),
                },
            ]),
        ),
    ];
    for (wire, expected) in cases {
        assert_eq!(
            decode_one(wire),
            Ok(expected),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    for bad in [
        &b":abc\r\n"[..],
        b"#x\r\n",
        b",notanumber\r\n",
        b"=2\r\nab\r\n",
        b"_x\r\n",
    ] {
        assert!(
            matches!(decode_one(bad), Err(RespError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Property tests

fn arb_text() -> impl Strategy<Value = Bytes> {
    "[ -~]{0,12}".prop_map(|s| Bytes::from(s.into_bytes()))
}

fn arb_binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn arb_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |d| !d.is_nan()),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.1),
    ]
}

/// Values that survive RESP3 encoding and decoding unchanged: sets hold distinct bulk
/// strings and maps distinct bulk keys (the crate keeps them in an `IndexMap`).
fn arb_value3() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        arb_text().prop_map(Value::Simple),
        arb_text().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        arb_binary().prop_map(Value::Bulk),
        Just(Value::Null),
        arb_double().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "-?[1-9][0-9]{0,30}".prop_map(|s| Value::BigNumber(Bytes::from(s.into_bytes()))),
        (prop_oneof![Just(*b"txt"), Just(*b"mkd")], arb_binary())
            .prop_map(|(format, text)| Value::Verbatim { format, text }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Push),
            prop::collection::btree_set(prop::collection::vec(any::<u8>(), 0..6), 0..4)
                .prop_map(|s| Value::Set(s.into_iter().map(|b| Value::Bulk(b.into())).collect())),
            prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), inner, 0..4)
                .prop_map(|m| Value::Map(
                    m.into_iter()
                        .map(|(k, v)| (Value::Bulk(k.into()), v))
                        .collect()
                )),
        ]
    })
}

/// What RESP2 encoding turns a value into, as the client decodes it.
fn downgrade(v: Value) -> Value {
    match v {
        Value::Map(pairs) => Value::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [downgrade(k), downgrade(v)])
                .collect(),
        ),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            Value::Array(items.into_iter().map(downgrade).collect())
        }
        Value::Boolean(b) => Value::Integer(i64::from(b)),
        Value::BigNumber(n) => Value::Bulk(n),
        Value::Verbatim { text, .. } => Value::Bulk(text),
        Value::Double(d) => {
            let mut out = BytesMut::new();
            encode_value(&Value::Double(d), RespVersion::Resp3, &mut out);
            Value::Bulk(Bytes::copy_from_slice(&out[1..out.len() - 2]))
        }
        other => other,
    }
}

/// redis-protocol's frames as values: the oracle of the differential tests.
mod oracle {
    use super::*;
    use redis_protocol::resp2::types::BytesFrame as Frame2;
    use redis_protocol::resp3::types::{BytesFrame as Frame3, VerbatimStringFormat};

    fn from2(f: Frame2) -> Value {
        match f {
            Frame2::SimpleString(b) => Value::Simple(b),
            Frame2::Error(s) => Value::Error(s.into_inner()),
            Frame2::Integer(n) => Value::Integer(n),
            Frame2::BulkString(b) => Value::Bulk(b),
            Frame2::Array(items) => Value::Array(items.into_iter().map(from2).collect()),
            Frame2::Null => Value::Null,
        }
    }

    fn from3(f: Frame3) -> Value {
        let all = |items: Vec<Frame3>| items.into_iter().map(from3).collect();
        match f {
            Frame3::BlobString { data, .. } => Value::Bulk(data),
            Frame3::BlobError { data, .. } => Value::Error(data),
            Frame3::SimpleString { data, .. } => Value::Simple(data),
            Frame3::SimpleError { data, .. } => Value::Error(data.into_inner()),
            Frame3::Boolean { data, .. } => Value::Boolean(data),
            Frame3::Null => Value::Null,
            Frame3::Number { data, .. } => Value::Integer(data),
            Frame3::Double { data, .. } => Value::Double(data),
            Frame3::BigNumber { data, .. } => Value::BigNumber(data),
            Frame3::VerbatimString { data, format, .. } => Value::Verbatim {
                format: match format {
                    VerbatimStringFormat::Text => *b"txt",
                    VerbatimStringFormat::Markdown => *b"mkd",
                },
                text: data,
            },
            Frame3::Array { data, .. } => Value::Array(all(data)),
            Frame3::Set { data, .. } => Value::Set(all(data.into_iter().collect())),
            Frame3::Push { data, .. } => Value::Push(all(data)),
            Frame3::Map { data, .. } => Value::Map(
                data.into_iter()
                    .map(|(k, v)| (from3(k), from3(v)))
                    .collect(),
            ),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    /// Maps with their pairs sorted: the crate builds maps back to front.
    pub(super) fn normalize(v: Value) -> Value {
        match v {
            Value::Map(pairs) => {
                let mut pairs: Vec<_> = pairs
                    .into_iter()
                    .map(|(k, v)| (normalize(k), normalize(v)))
                    .collect();
                pairs.sort_by_key(|(k, _)| format!("{k:?}"));
                Value::Map(pairs)
            }
            Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
            Value::Set(items) => Value::Set(items.into_iter().map(normalize).collect()),
            Value::Push(items) => Value::Push(items.into_iter().map(normalize).collect()),
            other => other,
        }
    }

    pub(super) fn decode2(wire: &[u8]) -> Value {
        let buf = Bytes::copy_from_slice(wire);
        let (f, n) = redis_protocol::resp2::decode::decode_bytes(&buf)
            .unwrap()
            .unwrap();
        assert_eq!(n, wire.len());
        from2(f)
    }

    pub(super) fn decode3(wire: &[u8]) -> Value {
        let buf = Bytes::copy_from_slice(wire);
        let (f, n) = redis_protocol::resp3::decode::complete::decode_bytes(&buf)
            .unwrap()
            .unwrap();
        assert_eq!(n, wire.len());
        from3(f)
    }
}

/// Splits `data` at the given (sorted, deduplicated) cut points.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts {
        out.push(data[from..c].to_vec());
        from = c;
    }
    out.push(data[from..].to_vec());
    out
}

/// An answer for `borrowed_answers_match_owned_ones`: RESP3-only kinds too, so a `HELLO`
/// that switched versions shows in the bytes.
fn arb_answer() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::int),
        "[a-z]{0,8}".prop_map(|s| Value::bulk(s.into_bytes())),
        Just(Value::error("ERR nope")),
        Just(Value::Null),
        Just(Value::Map(vec![(Value::simple("proto"), Value::int(3))])),
    ]
}

proptest! {
    /// Answering through `try_send_borrowed` (the I/O actor's way for an answer in a box,
    /// falling back to `send_response`) writes exactly what `send_response` alone writes,
    /// whatever the order of the answers and whatever the commands (version switches, QUIT).
    #[test]
    fn borrowed_answers_match_owned_ones(
        cmds in proptest::collection::vec(
            prop_oneof![Just("PING"), Just("HELLO 3"), Just("HELLO 2"), Just("RESET"), Just("QUIT")],
            1..12,
        ),
        answers in proptest::collection::vec(arb_answer(), 12),
        order in Just(()).prop_perturb(|_, mut rng| {
            let mut o: Vec<usize> = (0..12).collect();
            for i in (1..o.len()).rev() {
                o.swap(i, (rng.next_u32() as usize) % (i + 1));
            }
            o
        }),
    ) {
        let input: String = cmds.iter().map(|c| format!("{c}\r\n")).collect();
        let (mut owned, now) = server();
        let (mut borrowed, _) = server();
        let ids = requests(&feed(&mut owned, input.as_bytes(), now));
        prop_assert_eq!(requests(&feed(&mut borrowed, input.as_bytes(), now)).len(), ids.len());
        for &i in order.iter().filter(|&&i| i < ids.len()) {
            let (id, answer) = (ids[i].0, &answers[i]);
            let a = owned.send_response(id, answer.clone());
            let b = if borrowed.try_send_borrowed(id, answer) {
                Ok(())
            } else {
                borrowed.send_response(id, answer.clone())
            };
            prop_assert_eq!(a, b);
            prop_assert_eq!(output(&mut owned, now), output(&mut borrowed, now));
        }
        // Every request is answered now: a second answer is refused both ways.
        if let Some((id, _)) = ids.first() {
            prop_assert!(!borrowed.try_send_borrowed(*id, &Value::ok()));
        }
    }
}

proptest! {
    #[test]
    fn resp3_values_round_trip(v in arb_value3()) {
        let wire = encode(&v, RespVersion::Resp3);
        prop_assert_eq!(decode_one(&wire), Ok(v));
    }

    #[test]
    fn resp2_encoding_downgrades_losslessly_where_it_can(v in arb_value3()) {
        let wire = encode(&v, RespVersion::Resp2);
        prop_assert_eq!(decode_one(&wire), Ok(downgrade(v)));
    }

    #[test]
    fn encoding_and_decoding_agree_with_redis_protocol(v in arb_value3()) {
        // Our encoder is read back by redis-protocol as the value we meant, and our decoder
        // reads what redis-protocol reads.
        // (The crate builds maps back to front, so map order is not compared.)
        use oracle::normalize;
        let wire3 = encode(&v, RespVersion::Resp3);
        prop_assert_eq!(normalize(oracle::decode3(&wire3)), normalize(v.clone()));
        prop_assert_eq!(
            decode_one(&wire3).map(normalize),
            Ok(normalize(oracle::decode3(&wire3)))
        );
        let wire2 = encode(&v, RespVersion::Resp2);
        prop_assert_eq!(decode_one(&wire2), Ok(oracle::decode2(&wire2)));
    }

    #[test]
    fn replies_decode_in_any_chunking(
        values in prop::collection::vec(arb_value3(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        // Through the client codec, so pushes come out as pushes, the rest as responses.
        let (mut c, now) = client();
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut id = 0;
        for v in &values {
            wire.extend_from_slice(&encode(v, RespVersion::Resp3));
            if matches!(v, Value::Push(_)) {
                expected.push(push(v.clone()));
            } else {
                c.send_request(Command::new("X")).unwrap();
                expected.push(response(id, v.clone()));
                id += 1;
            }
        }
        let mut buf = BytesMut::new();
        let mut evs = Vec::new();
        for piece in chunks(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            evs.extend(client_events(&mut c, &mut buf, now));
        }
        prop_assert_eq!(evs, expected);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn commands_round_trip_client_to_server(
        commands in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        crlf in any::<bool>(),
    ) {
        let (mut client, now) = client();
        let mut sent = Vec::new();
        for args in &commands {
            let mut args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            if crlf {
                args.push(Bytes::from_static(b"\r\n*1\r\n$4\r\nPING\r\n"));
            }
            let cmd = Command::from_args(args);
            client.send_request(cmd.clone()).unwrap();
            sent.push(cmd);
        }
        let wire = client_output(&mut client, now);
        let (mut server, now) = server();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in chunks(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            got.extend(requests(&events(&mut server, &mut buf, now)).into_iter().map(|(_, c)| c));
        }
        prop_assert_eq!(got, sent);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn server_survives_arbitrary_input(
        input in prop::collection::vec(any::<u8>(), 0..512),
        step in 1usize..64,
        star in any::<bool>(),
    ) {
        let limits = RespLimits {
            max_bulk_len: 64,
            max_array_len: 8,
            max_inline_len: 64,
            max_pipeline: 4,
            ..RespLimits::default()
        };
        let (mut c, now) = server_with(limits);
        let mut buf = BytesMut::new();
        let input = if star { [b"*".as_slice(), &input].concat() } else { input };
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let evs = events(&mut c, &mut buf, now);
            for (id, _) in requests(&evs) {
                prop_assert!(c.send_response(id, Value::ok()).is_ok());
            }
            let _ = output(&mut c, now);
            if c.wants_read() {
                prop_assert!(buf.len() <= 64 + 8 * (64 + 2 + 24) + step);
            }
        }
        let _ = c.on_eof();
        let _ = output(&mut c, now);
        prop_assert!(c.should_close());
    }

    #[test]
    fn client_survives_arbitrary_input(
        input in prop::collection::vec(any::<u8>(), 0..512),
        step in 1usize..64,
        outstanding in 0usize..4,
    ) {
        let (mut c, now) = client();
        for _ in 0..outstanding {
            c.send_request(Command::new("GET").arg("k")).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut answered = 0;
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            for e in client_events(&mut c, &mut buf, now) {
                if matches!(e, ClientEvent::Response { .. } | ClientEvent::Error { id: Some(_), .. }) {
                    answered += 1;
                }
            }
        }
        c.on_eof();
        for e in client_events(&mut c, &mut buf, now) {
            if matches!(e, ClientEvent::Response { .. } | ClientEvent::Error { id: Some(_), .. }) {
                answered += 1;
            }
        }
        prop_assert_eq!(answered, outstanding, "every request gets exactly one event");
        prop_assert!(c.should_close());
    }
}

/// A timing note, not a benchmark: `cargo test --release -p sinew-protocols resp_timing --
/// --ignored --nocapture` prints the codec-only cost of a pipelined GET (decode, answer,
/// encode, transmit), the server's hot path.
#[test]
#[ignore]
fn resp_timing() {
    let (mut c, now) = server();
    let batch = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000042\r\n".repeat(16);
    let value = Bytes::from_static(b"xxx");
    let rounds = 200_000;
    let start = Instant::now();
    let mut bytes_out = 0;
    for _ in 0..rounds {
        let mut buf = BytesMut::from(&batch[..]);
        while let Some(ev) = c.poll_event(&mut buf, now) {
            if let ServerEvent::Request { id, request } = ev {
                std::hint::black_box(&request);
                c.send_response(id, Value::Bulk(value.clone())).unwrap();
            }
        }
        while let Some(b) = c.poll_transmit(now) {
            bytes_out += b.len();
        }
    }
    let per = start.elapsed() / (rounds * 16);
    println!("pipelined GET (16 per read): {per:?} per command, {bytes_out} bytes out");
}
