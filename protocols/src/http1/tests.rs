//! Connection-level tests: the server and client state machines driven with byte slices and
//! made-up instants, a smuggling table, byte-at-a-time parsing, timers, and proptest round
//! trips through a client/server pair.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::{ClientEvent, RequestId, ServerEvent, TimeoutKind};

fn server_with(limits: Limits) -> (ServerConnection, Instant) {
    let now = Instant::now();
    let config = ServerConfig {
        limits,
        send_date: false,
        ..ServerConfig::default()
    };
    (ServerConnection::new(config, now), now)
}

fn server() -> (ServerConnection, Instant) {
    server_with(Limits::default())
}

fn events(conn: &mut ServerConnection, buf: &mut BytesMut, now: Instant) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = conn.poll_event(buf, now) {
        out.push(e);
        assert!(out.len() < 10_000, "event loop does not terminate");
    }
    out
}

fn feed(conn: &mut ServerConnection, input: &[u8], now: Instant) -> Vec<Event> {
    let mut buf = BytesMut::from(input);
    events(conn, &mut buf, now)
}

fn output(conn: &mut ServerConnection, now: Instant) -> String {
    let mut wire = Vec::new();
    while let Some(b) = conn.poll_transmit(now) {
        wire.extend_from_slice(&b);
    }
    String::from_utf8_lossy(&wire).into_owned()
}

fn request_ids(evs: &[Event]) -> Vec<RequestId> {
    evs.iter()
        .filter_map(|e| match e {
            ServerEvent::Request { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn ok(body: &'static str) -> Response {
    Response::new(200).with_body(Body::Full(Bytes::from_static(body.as_bytes())))
}

#[test]
fn keep_alive_get() {
    let (mut c, now) = server();
    let evs = feed(&mut c, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", now);
    let [ServerEvent::Request { id, request }] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(request.method, Method::Get);
    assert_eq!(request.target(), b"/hello");
    assert_eq!(request.body, Body::empty());
    c.send_response(*id, ok("hi")).unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
    );
    assert!(!c.should_close());
    assert!(c.wants_read());
}

#[test]
fn connection_close_and_http10() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    assert_eq!(
        request_ids(&evs).len(),
        1,
        "nothing is read after Connection: close"
    );
    c.send_response(RequestId(0), ok("")).unwrap();
    assert!(output(&mut c, now).contains("connection: close\r\n"));
    assert!(c.should_close());

    let (mut c, now) = server();
    let evs = feed(&mut c, b"GET / HTTP/1.0\r\n\r\n", now);
    c.send_response(request_ids(&evs)[0], ok("x")).unwrap();
    assert!(output(&mut c, now).contains("connection: close"));
    assert!(c.should_close());

    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        now,
    );
    c.send_response(request_ids(&evs)[0], ok("x")).unwrap();
    assert!(output(&mut c, now).contains("connection: keep-alive"));
    assert!(!c.should_close());
}

#[test]
fn response_connection_close_field_closes_and_is_written_once() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    assert_eq!(request_ids(&evs).len(), 2);
    // Answered out of order: the close is found while the second answer waits in its slot.
    c.send_response(
        RequestId(1),
        ok("b").header("Connection", "keep-alive, Close"),
    )
    .unwrap();
    c.send_response(RequestId(0), ok("a")).unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na\
         HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nb"
    );
    assert!(c.should_close());
    assert!(!c.wants_read());

    // HTTP/1.0: close replaces the keep-alive the encoder would otherwise write.
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        now,
    );
    c.send_response(request_ids(&evs)[0], ok("x").header("connection", "close"))
        .unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
    );
    assert!(c.should_close());
}

#[test]
fn pipelined_responses_leave_in_request_order() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    let ids = request_ids(&evs);
    assert_eq!(ids, vec![RequestId(0), RequestId(1), RequestId(2)]);
    c.send_response(ids[2], ok("c")).unwrap();
    assert_eq!(output(&mut c, now), "", "c waits for a and b");
    // b streams while a is still unanswered: buffered in b's slot.
    c.send_response(ids[1], Response::new(200).with_body(Body::Stream))
        .unwrap();
    c.send_body_chunk(ids[1], Bytes::from_static(b"bb"))
        .unwrap();
    assert_eq!(output(&mut c, now), "");
    c.send_response(ids[0], ok("a")).unwrap();
    let out = output(&mut c, now);
    assert!(out.ends_with("\r\n\r\n2\r\nbb\r\n"), "{out}");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"));
    c.finish_body(ids[1], None).unwrap();
    assert_eq!(
        output(&mut c, now),
        "0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc"
    );
    assert_eq!(
        c.send_response(ids[0], ok("again")),
        Err(Http1Error::UnknownRequest)
    );
}

#[test]
fn small_bodies_are_zero_copy_slices() {
    let (mut c, now) = server();
    let mut buf =
        BytesMut::from(&b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let evs = events(&mut c, &mut buf, now);
    let [ServerEvent::Request { request, .. }] = &evs[..] else {
        panic!("{evs:?}")
    };
    let Body::Full(body) = &request.body else {
        panic!()
    };
    assert_eq!(&body[..], b"hello");
    assert!(
        range.contains(&(body.as_ptr() as usize)),
        "body points into the receive buffer"
    );
    assert!(range.contains(&(request.target().as_ptr() as usize)));
}

/// A received request's target is a span of its head: it must read the same after the fields
/// are changed or replaced, and the request must compare equal to one built with the same
/// target as its own bytes.
#[test]
fn a_received_target_survives_changes_to_the_fields() {
    let now = Instant::now();
    let mut c = ServerConnection::new(ServerConfig::default(), now);
    let evs = feed(
        &mut c,
        b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        now,
    );
    let [ServerEvent::Request { request, .. }] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(request.target(), b"/a?b=c");
    assert_eq!(&request.target_bytes()[..], b"/a?b=c");

    let built = Request::new(Method::Get, "/a?b=c")
        .header("Host", "x")
        .header("Accept", "*/*");
    assert_eq!(request.headers(), built.headers());
    assert_eq!(
        *request, built,
        "the same request, wherever its target is kept"
    );

    let mut appended = request.clone();
    appended.headers_mut().append("x-extra", "1");
    assert_eq!(appended.target(), b"/a?b=c");
    assert_eq!(appended.headers().get("x-extra"), Some(&b"1"[..]));
    assert_ne!(appended, built);

    let mut replaced = request.clone();
    replaced.set_headers(Headers::new());
    assert_eq!(
        replaced.target(),
        b"/a?b=c",
        "the target outlives the head's fields"
    );
    assert!(replaced.headers().get("host").is_none());

    let mut retargeted = request.clone();
    retargeted.set_target("/elsewhere");
    assert_eq!(retargeted.target(), b"/elsewhere");
    assert!(format!("{retargeted:?}").contains("/elsewhere"));
}

#[test]
fn large_bodies_stream() {
    let (mut c, now) = server_with(Limits {
        body_stream_threshold: 4,
        ..Limits::default()
    });
    let evs = feed(
        &mut c,
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
        now,
    );
    assert!(
        matches!(&evs[0], ServerEvent::Request { request, .. } if request.body == Body::Stream)
    );
    assert_eq!(
        evs[1],
        ServerEvent::BodyChunk {
            id: RequestId(0),
            data: Bytes::from_static(b"0123456789")
        }
    );
    assert_eq!(
        evs[2],
        ServerEvent::BodyEnd {
            id: RequestId(0),
            trailers: None
        }
    );
}

#[test]
fn chunked_request_with_trailers() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nChecksum: 7\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    assert_eq!(evs.len(), 5, "{evs:?}");
    assert_eq!(
        evs[1],
        ServerEvent::BodyChunk {
            id: RequestId(0),
            data: Bytes::from_static(b"abc")
        }
    );
    assert_eq!(
        evs[2],
        ServerEvent::BodyChunk {
            id: RequestId(0),
            data: Bytes::from_static(b"de")
        }
    );
    let ServerEvent::BodyEnd {
        trailers: Some(t), ..
    } = &evs[3]
    else {
        panic!("{:?}", evs[3])
    };
    assert_eq!(t.get("checksum"), Some(&b"7"[..]));
    assert!(matches!(
        &evs[4],
        ServerEvent::Request {
            id: RequestId(1),
            ..
        }
    ));
}

#[test]
fn expect_continue_is_sent_when_the_body_is_read() {
    let (mut c, now) = server();
    let mut buf = BytesMut::from(
        &b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"[..],
    );
    let evs = events(&mut c, &mut buf, now);
    let [ServerEvent::Request { id, request }] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert!(request.expect_continue);
    assert_eq!(request.body, Body::Stream);
    assert_eq!(
        output(&mut c, now),
        "",
        "no 100 before the application reads"
    );
    c.read_body(*id);
    assert_eq!(output(&mut c, now), "HTTP/1.1 100 Continue\r\n\r\n");
    buf.extend_from_slice(b"abc");
    let evs = events(&mut c, &mut buf, now);
    assert_eq!(evs.len(), 2);
    c.send_response(*id, ok("done")).unwrap();
    assert!(output(&mut c, now).starts_with("HTTP/1.1 200 OK"));
    assert!(!c.should_close());

    // Answering without reading: no 100, and the connection closes (body state unknown).
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        now,
    );
    c.send_response(request_ids(&evs)[0], Response::new(413))
        .unwrap();
    let out = output(&mut c, now);
    assert!(
        out.starts_with("HTTP/1.1 413 Content Too Large\r\n") && out.contains("connection: close")
    );
    assert!(c.should_close());
}

#[test]
fn head_responses_have_no_body() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /s HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    let ids = request_ids(&evs);
    c.send_response(ids[0], ok("hello")).unwrap();
    c.send_response(ids[1], Response::new(200).with_body(Body::Stream))
        .unwrap();
    c.send_body_chunk(ids[1], Bytes::from_static(b"dropped"))
        .unwrap();
    c.finish_body(ids[1], None).unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn head_answer_may_state_its_length_without_a_body() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    let ids = request_ids(&evs);
    c.send_response(
        ids[0],
        Response::new(200).header("content-length", "1048576"),
    )
    .unwrap();
    c.send_response(ids[1], ok("next")).unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"
    );
    // On a GET the same response is framed by its (empty) body: the header cannot lie.
    let evs = feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", now);
    let id = request_ids(&evs)[0];
    c.send_response(id, Response::new(200).header("content-length", "1048576"))
        .unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn streamed_response_to_http10_is_close_delimited() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        now,
    );
    let id = request_ids(&evs)[0];
    c.send_response(id, Response::new(200).with_body(Body::Stream))
        .unwrap();
    c.send_body_chunk(id, Bytes::from_static(b"raw")).unwrap();
    c.finish_body(id, None).unwrap();
    assert_eq!(
        output(&mut c, now),
        "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nraw"
    );
    assert!(c.should_close());
}

#[test]
fn date_header_is_cached_and_caller_timed() {
    let now = Instant::now();
    let mut c = ServerConnection::new(ServerConfig::default(), now);
    c.set_date(UNIX_EPOCH + Duration::from_secs(784_111_777));
    let evs = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
    c.send_response(request_ids(&evs)[0], ok("")).unwrap();
    assert!(output(&mut c, now).contains("date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
    c.set_date(SystemTime::now());
}

#[test]
fn bad_response_fields_are_rejected_without_output() {
    let (mut c, now) = server();
    let evs = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
    let id = request_ids(&evs)[0];
    let evil = ok("").header("x", "1\r\nset-cookie: a=b");
    assert_eq!(c.send_response(id, evil), Err(Http1Error::InvalidHeader));
    assert_eq!(
        c.send_response(
            id,
            Response::new(204).with_body(Body::Full(Bytes::from_static(b"x")))
        ),
        Err(Http1Error::BodyNotAllowed)
    );
    assert_eq!(output(&mut c, now), "");
    c.send_response(id, Response::new(204)).unwrap();
    assert_eq!(output(&mut c, now), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        c.send_response(RequestId(99), ok("")),
        Err(Http1Error::UnknownRequest)
    );
}

/// Every vector must be rejected with `status`, answered with a closing error response, and
/// the request smuggled after it must never be seen.
#[test]
fn smuggling_vectors_are_rejected_and_close() {
    const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: 1\r\n".repeat(101)
    );
    let huge_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let vectors: Vec<(&str, Vec<u8>, u16)> = vec![
        ("CL.TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("TE.CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("CL.CL conflicting", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), 400),
        ("CL list conflicting", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab".to_vec(), 400),
        ("CL with sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na".to_vec(), 400),
        ("CL hex", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\na".to_vec(), 400),
        ("CL overflow", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 184467440737095516160\r\n\r\n".to_vec(), 400),
        ("TE obs-fold", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n".to_vec(), 400),
        ("space before colon", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("TE xchunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n".to_vec(), 501),
        ("TE gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        ("TE chunked not last", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n".to_vec(), 501),
        ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("bare LF request line", b"GET / HTTP/1.1\nHost: x\r\n\r\n".to_vec(), 400),
        ("bare LF header", b"GET / HTTP/1.1\r\nHost: x\n\r\n".to_vec(), 400),
        ("bare LF end of head", b"GET / HTTP/1.1\r\nHost: x\r\n\n".to_vec(), 400),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n".to_vec(), 400),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n".to_vec(), 400),
        ("chunk size not hex", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\ng\r\n".to_vec(), 400),
        ("chunk size empty", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n".to_vec(), 400),
        ("chunk size negative", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n".to_vec(), 400),
        ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n".to_vec(), 400),
        ("chunk size 0x prefix", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n".to_vec(), 400),
        ("chunk missing CRLF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX0\r\n\r\n".to_vec(), 400),
        ("chunk size bare LF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n".to_vec(), 400),
        ("chunk data bare LF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n".to_vec(), 400),
        ("two Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("bad version", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("double space", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("expectation", b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n".to_vec(), 417),
        ("URI too long", long_line.into_bytes(), 414),
        ("too many headers", many_headers.into_bytes(), 431),
        ("head too large", huge_head.into_bytes(), 431),
        ("body too large", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n".to_vec(), 413),
        ("chunked too large", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n".to_vec(), 413),
    ];
    for (name, mut input, status) in vectors {
        input.extend_from_slice(SMUGGLED);
        // Both all at once and byte at a time.
        for one_byte in [false, true] {
            let (mut c, now) = server();
            let mut buf = BytesMut::new();
            let mut evs = Vec::new();
            if one_byte {
                for &b in &input {
                    buf.extend_from_slice(&[b]);
                    evs.extend(events(&mut c, &mut buf, now));
                }
            } else {
                buf.extend_from_slice(&input);
                evs = events(&mut c, &mut buf, now);
            }
            let err = evs.iter().find_map(|e| match e {
                ServerEvent::Error { error, .. } => Some(error.clone()),
                _ => None,
            });
            let err = err.unwrap_or_else(|| panic!("{name}: not rejected: {evs:?}"));
            assert_eq!(err.status(), status, "{name}: {err}");
            assert!(
                !evs.iter().any(|e| matches!(e, ServerEvent::Request { request, .. } if request.target() == b"/smuggled")),
                "{name}: smuggled request was read"
            );
            for id in request_ids(&evs) {
                let _ = c.send_response(id, ok(""));
            }
            let out = output(&mut c, now);
            assert!(
                out.contains(&format!("HTTP/1.1 {status} ")),
                "{name}: {out}"
            );
            assert!(out.contains("connection: close"), "{name}: {out}");
            assert!(c.should_close(), "{name}: must close");
            assert!(!c.wants_read());
        }
    }
}

#[test]
fn bare_lf_is_accepted_by_policy() {
    let (mut c, now) = server_with(Limits {
        line_endings: LineEndingPolicy::AllowBareLf,
        ..Limits::default()
    });
    let evs = feed(
        &mut c,
        b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n1\na\n0\n\n",
        now,
    );
    assert_eq!(evs.len(), 3, "{evs:?}");
}

#[test]
fn error_response_follows_earlier_answers() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
        now,
    );
    assert!(matches!(
        evs[..],
        [
            ServerEvent::Request { .. },
            ServerEvent::Error { id: None, .. }
        ]
    ));
    assert_eq!(output(&mut c, now), "", "400 waits for the earlier answer");
    assert!(!c.should_close());
    c.send_response(RequestId(0), ok("1")).unwrap();
    let out = output(&mut c, now);
    assert!(
        out.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1HTTP/1.1 400 Bad Request\r\n"
        ),
        "{out}"
    );
    assert!(c.should_close());
}

#[test]
fn error_in_streamed_body_answers_that_request() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n",
        now,
    );
    assert!(
        matches!(
            evs.last(),
            Some(ServerEvent::Error {
                id: Some(RequestId(0)),
                ..
            })
        ),
        "{evs:?}"
    );
    assert_eq!(
        c.send_response(RequestId(0), ok("")),
        Err(Http1Error::UnknownRequest)
    );
    assert!(output(&mut c, now).starts_with("HTTP/1.1 400 "));
    assert!(c.should_close());
}

#[test]
fn byte_at_a_time_matches_all_at_once() {
    let input: &[u8] = b"\r\nGET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789\r\n\r\nPOST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbodyPUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nT: 1\r\n\r\nGET /end HTTP/1.0\r\n\r\n";
    let (mut whole, now) = server();
    let expected = feed(&mut whole, input, now);
    let (mut c, now) = server();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in input {
        buf.extend_from_slice(&[b]);
        got.extend(events(&mut c, &mut buf, now));
    }
    // Streamed chunks may be split differently; compare with chunk data concatenated.
    fn normalise(evs: Vec<Event>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in evs {
            match e {
                ServerEvent::BodyChunk { data, .. } => match out.last_mut() {
                    Some(last) if last.starts_with("chunk:") => {
                        last.push_str(&String::from_utf8_lossy(&data))
                    }
                    _ => out.push(format!("chunk:{}", String::from_utf8_lossy(&data))),
                },
                other => out.push(format!("{other:?}")),
            }
        }
        out
    }
    assert_eq!(expected.len(), 7, "{expected:?}");
    assert_eq!(normalise(got), normalise(expected));
}

#[test]
fn slowloris_head_hits_the_header_read_timeout() {
    let (mut c, start) = server();
    let timeout = Timeouts::default().header_read.unwrap();
    // The first head must arrive within the timeout of the connection starting.
    assert_eq!(c.next_timeout(), Some(start + timeout));
    // A request arrives, is answered; the connection goes idle.
    let evs = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", start);
    c.send_response(request_ids(&evs)[0], ok("")).unwrap();
    let _ = output(&mut c, start);
    let idle = Timeouts::default().idle.unwrap();
    assert_eq!(c.next_timeout(), Some(start + idle));
    // Then the slow client dribbles a head, one byte per second.
    let mut buf = BytesMut::new();
    let t1 = start + Duration::from_secs(1);
    for (i, &b) in b"GET / HTTP/1.1\r\nHost: x\r\nX-".iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let now = t1 + Duration::from_secs(i as u64 / 4);
        assert!(events(&mut c, &mut buf, now).is_empty());
        if let Some(d) = c.next_timeout() {
            if d <= now {
                break;
            }
        }
        assert_eq!(c.on_timeout(now), None);
    }
    let deadline = c.next_timeout().unwrap();
    assert_eq!(
        deadline,
        t1 + timeout,
        "deadline counts from the first byte of the head"
    );
    assert_eq!(c.on_timeout(deadline - Duration::from_millis(1)), None);
    assert_eq!(c.on_timeout(deadline), Some(TimeoutKind::RequestRead));
    assert!(output(&mut c, deadline).starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    assert!(c.should_close());
    assert!(!c.wants_read());
}

#[test]
fn slow_body_hits_the_body_read_timeout() {
    let body_read = Timeouts::default().body_read.unwrap();
    for input in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let (mut c, t0) = server();
        let mut buf = BytesMut::from(input);
        let seen = request_ids(&events(&mut c, &mut buf, t0));
        // Progress re-arms the timer.
        let t1 = t0 + body_read / 2;
        buf.extend_from_slice(b"c");
        let _ = events(&mut c, &mut buf, t1);
        assert_eq!(c.next_timeout(), Some(t1 + body_read), "{input:?}");
        assert_eq!(c.on_timeout(t0 + body_read), None);
        assert_eq!(c.on_timeout(t1 + body_read), Some(TimeoutKind::RequestRead));
        let out = output(&mut c, t1);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(c.should_close());
        // A streamed request the application saw can no longer be answered by it.
        for id in seen {
            assert_eq!(c.send_response(id, ok("")), Err(Http1Error::UnknownRequest));
        }
    }
}

#[test]
fn eof_mid_request() {
    // Whole body cut short: the application never saw it; nothing is sent; close.
    let (mut c, now) = server();
    assert!(feed(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab",
        now
    )
    .is_empty());
    assert_eq!(c.on_eof(), None);
    assert_eq!(output(&mut c, now), "");
    assert!(c.should_close());
    // Streamed body cut short: an error event for the request the application saw.
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        now,
    );
    let id = request_ids(&evs)[0];
    assert_eq!(
        c.on_eof(),
        Some(ServerEvent::Error {
            id: Some(id),
            error: Http1Error::UnexpectedEof
        })
    );
    assert!(c.should_close() || c.has_output());
    // Half-close after complete requests: answers still go out, then close.
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /partial HT",
        now,
    );
    assert_eq!(c.on_eof(), None);
    assert!(!c.should_close());
    c.send_response(request_ids(&evs)[0], ok("x")).unwrap();
    assert!(output(&mut c, now).starts_with("HTTP/1.1 200 OK"));
    assert!(c.should_close());
}

#[test]
fn silent_connection_and_idle_timeout_close() {
    let (mut c, start) = server();
    let d = c.next_timeout().unwrap();
    assert_eq!(c.on_timeout(d), Some(TimeoutKind::RequestRead));
    assert_eq!(
        output(&mut c, d),
        "",
        "nothing was asked: close without a 408"
    );
    assert!(c.should_close());

    let (mut c, start2) = server();
    let evs = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", start2);
    c.send_response(request_ids(&evs)[0], ok("")).unwrap();
    let _ = output(&mut c, start2);
    let d = c.next_timeout().unwrap();
    assert_eq!(c.on_timeout(d), Some(TimeoutKind::Idle));
    assert!(c.should_close());
    let _ = start;
}

#[test]
fn graceful_shutdown_finishes_in_flight_then_closes() {
    let (mut c, now) = server();
    let evs = feed(
        &mut c,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    let ids = request_ids(&evs);
    c.shutdown();
    assert!(!c.wants_read());
    assert!(feed(&mut c, b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n", now).is_empty());
    c.send_response(ids[0], ok("1")).unwrap();
    assert!(!output(&mut c, now).contains("close"));
    assert!(!c.should_close(), "request 2 is still in flight");
    c.send_response(ids[1], ok("2")).unwrap();
    assert!(output(&mut c, now).contains("connection: close"));
    assert!(c.should_close());

    let (mut c, _) = server();
    c.shutdown();
    assert!(c.should_close(), "an idle connection closes at once");
}

#[test]
fn pipelining_depth_applies_backpressure() {
    let (mut c, now) = server_with(Limits {
        max_pipelined: 2,
        ..Limits::default()
    });
    let mut buf = BytesMut::from(&b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert_eq!(events(&mut c, &mut buf, now).len(), 2);
    assert!(!c.wants_read());
    c.send_response(RequestId(0), ok("")).unwrap();
    assert!(c.wants_read());
    let evs = events(&mut c, &mut buf, now);
    assert_eq!(request_ids(&evs), vec![RequestId(2)]);
}

#[test]
fn out_of_order_buffering_is_bounded() {
    let (mut c, now) = server_with(Limits {
        max_buffered_output: 1024,
        ..Limits::default()
    });
    let evs = feed(
        &mut c,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        now,
    );
    let ids = request_ids(&evs);
    let big = Response::new(200).with_body(Body::Full(Bytes::from(vec![b'x'; 4096])));
    assert_eq!(
        c.send_response(ids[1], big.clone()),
        Err(Http1Error::OutputBufferFull)
    );
    c.send_response(ids[0], big.clone()).unwrap();
    c.send_response(ids[1], big).unwrap();
}

// ---------------------------------------------------------------- client

fn client() -> (ClientConnection, Instant) {
    let now = Instant::now();
    (ClientConnection::new(ClientConfig::default(), now), now)
}

fn cevents(c: &mut ClientConnection, input: &[u8], now: Instant) -> Vec<ClientEventOf> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(e) = c.poll_event(&mut buf, now) {
        out.push(e);
        assert!(out.len() < 10_000);
    }
    out
}

fn get(target: &'static str) -> Request {
    Request::new(Method::Get, target).header("host", "x")
}

fn full(evs: &[ClientEventOf], i: usize) -> (u16, Bytes) {
    match &evs[i] {
        ClientEvent::Response {
            response:
                Response {
                    status,
                    body: Body::Full(b),
                    ..
                },
            ..
        } => (*status, b.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_encodes_and_pipelines() {
    let (mut c, now) = client();
    let a = c.send_request(get("/a")).unwrap();
    let b = c
        .send_request(Request::new(Method::Head, "/b").header("host", "x"))
        .unwrap();
    let p = c
        .send_request(
            Request::new(Method::Post, "/p")
                .header("host", "x")
                .with_body(Body::Full(Bytes::from_static(b"xy"))),
        )
        .unwrap();
    let mut wire = Vec::new();
    while let Some(x) = c.poll_transmit(now) {
        wire.extend_from_slice(&x);
    }
    assert_eq!(
        String::from_utf8(wire).unwrap(),
        "GET /a HTTP/1.1\r\nhost: x\r\n\r\nHEAD /b HTTP/1.1\r\nhost: x\r\n\r\nPOST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nxy"
    );
    assert_eq!(c.in_flight(), 3);
    let evs = cevents(
        &mut c,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        now,
    );
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(full(&evs, 0), (200, Bytes::from_static(b"ok")));
    assert!(matches!(&evs[0], ClientEvent::Response { id, .. } if *id == a));
    assert!(matches!(&evs[1], ClientEvent::Response { id, .. } if *id == b));
    assert_eq!(
        full(&evs, 1),
        (200, Bytes::new()),
        "HEAD: Content-Length does not frame a body"
    );
    assert!(matches!(&evs[2], ClientEvent::Response { id, .. } if *id == p));
    assert_eq!(c.in_flight(), 0);
    assert!(c.is_reusable());
}

#[test]
fn client_chunked_and_close_delimited() {
    let (mut c, now) = client();
    let id = c.send_request(get("/")).unwrap();
    let evs = cevents(
        &mut c,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        now,
    );
    assert!(
        matches!(&evs[0], ClientEvent::Response { response, .. } if response.body == Body::Stream)
    );
    assert_eq!(
        evs[1],
        ClientEvent::BodyChunk {
            id,
            data: Bytes::from_static(b"abc")
        }
    );
    assert_eq!(evs[2], ClientEvent::BodyEnd { id, trailers: None });
    assert!(c.is_reusable());

    let id = c.send_request(get("/")).unwrap();
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\nuntil"[..]);
    let mut evs = Vec::new();
    while let Some(e) = c.poll_event(&mut buf, now) {
        evs.push(e);
    }
    assert!(
        !c.is_reusable(),
        "close-delimited responses end the connection"
    );
    buf.extend_from_slice(b" close");
    c.on_eof();
    while let Some(e) = c.poll_event(&mut buf, now) {
        evs.push(e);
    }
    assert_eq!(evs.len(), 4, "{evs:?}");
    assert_eq!(evs[3], ClientEvent::BodyEnd { id, trailers: None });
    assert!(c.should_close());
}

#[test]
fn client_connection_close_fails_the_rest() {
    let (mut c, now) = client();
    let a = c.send_request(get("/a")).unwrap();
    let b = c.send_request(get("/b")).unwrap();
    let evs = cevents(
        &mut c,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        now,
    );
    assert!(matches!(&evs[0], ClientEvent::Response { id, .. } if *id == a));
    assert_eq!(
        evs[1],
        ClientEvent::Error {
            id: Some(b),
            error: Http1Error::ConnectionClosed
        }
    );
    assert!(!c.is_reusable());
    assert_eq!(c.send_request(get("/c")), Err(Http1Error::ConnectionClosed));
}

#[test]
fn client_errors_answer_every_request() {
    // EOF in the middle of a body.
    let (mut c, now) = client();
    let a = c.send_request(get("/a")).unwrap();
    let b = c.send_request(get("/b")).unwrap();
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]);
    assert!(c.poll_event(&mut buf, now).is_none());
    c.on_eof();
    assert_eq!(
        c.poll_event(&mut buf, now),
        Some(ClientEvent::Error {
            id: Some(a),
            error: Http1Error::UnexpectedEof
        })
    );
    assert_eq!(
        c.poll_event(&mut buf, now),
        Some(ClientEvent::Error {
            id: Some(b),
            error: Http1Error::ConnectionClosed
        })
    );
    assert_eq!(c.poll_event(&mut buf, now), None);

    // Response timeout.
    let (mut c, now) = client();
    let a = c.send_request(get("/a")).unwrap();
    while c.poll_transmit(now).is_some() {}
    let d = c.next_timeout().unwrap();
    assert_eq!(d, now + Timeouts::default().response.unwrap());
    assert_eq!(c.on_timeout(d), Some(TimeoutKind::Response));
    assert_eq!(
        cevents(&mut c, b"", d),
        vec![ClientEvent::Error {
            id: Some(a),
            error: Http1Error::ResponseTimeout
        }]
    );

    // Unsolicited bytes and malformed heads.
    let (mut c, now) = client();
    assert!(matches!(
        cevents(&mut c, b"HTTP/1.1 200 OK\r\n\r\n", now)[..],
        [ClientEvent::Error { id: None, .. }]
    ));
    let (mut c, now) = client();
    let a = c.send_request(get("/a")).unwrap();
    let evs = cevents(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        now,
    );
    assert_eq!(
        evs,
        vec![ClientEvent::Error {
            id: Some(a),
            error: Http1Error::ContentLengthWithTransferEncoding
        }]
    );
    assert_eq!(Http1Error::ConnectionClosed.status(), 502);
}

/// A response whose body stops coming still times out: the response timer stays armed while
/// the last request's body is being read (whole or streamed), and the request being read gets
/// its error like the ones still waiting.
#[test]
fn client_times_out_a_body_that_stops_coming() {
    let cases: [&[u8]; 2] = [
        // Streamed (chunked): the head and one chunk, then nothing.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        // Whole (a small Content-Length): part of the body, then nothing.
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    ];
    for input in cases {
        let (mut c, now) = client();
        let a = c.send_request(get("/a")).unwrap();
        while c.poll_transmit(now).is_some() {}
        let t = now + Duration::from_millis(5);
        let evs = cevents(&mut c, input, t);
        assert!(evs.len() <= 2, "{evs:?}");
        let d = c
            .next_timeout()
            .expect("the response timer is armed while the body is read");
        assert_eq!(
            d,
            t + Timeouts::default().response.unwrap(),
            "armed from the head"
        );
        assert_eq!(c.on_timeout(d), Some(TimeoutKind::Response));
        let evs = cevents(&mut c, b"", d);
        assert_eq!(
            evs,
            vec![ClientEvent::Error {
                id: Some(a),
                error: Http1Error::ResponseTimeout
            }],
            "{}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(c.in_flight(), 0);
        assert!(c.should_close());
    }
}

/// A finished response does not leave the response timer armed on an idle connection.
#[test]
fn client_response_timer_stops_with_the_last_body() {
    let (mut c, now) = client();
    c.send_request(get("/a")).unwrap();
    while c.poll_transmit(now).is_some() {}
    let evs = cevents(
        &mut c,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        now,
    );
    assert!(
        matches!(evs.last(), Some(ClientEvent::BodyEnd { .. })),
        "{evs:?}"
    );
    assert_eq!(c.in_flight(), 0);
    assert_eq!(
        c.next_timeout(),
        Some(now + Timeouts::default().idle.unwrap()),
        "only the idle timer is left"
    );
}

#[test]
fn client_streams_request_bodies() {
    let (mut c, now) = client();
    let id = c
        .send_request(
            Request::new(Method::Post, "/up")
                .header("host", "x")
                .with_body(Body::Stream),
        )
        .unwrap();
    assert_eq!(c.send_request(get("/")), Err(Http1Error::BodyOutOfSequence));
    c.send_body_chunk(id, Bytes::from_static(b"part")).unwrap();
    let mut t = Headers::new();
    t.append("x-sum", "1");
    c.finish_body(id, Some(t)).unwrap();
    let mut wire = Vec::new();
    while let Some(x) = c.poll_transmit(now) {
        wire.extend_from_slice(&x);
    }
    assert_eq!(
        String::from_utf8(wire).unwrap(),
        "POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n0\r\nx-sum: 1\r\n\r\n"
    );
}

// ---------------------------------------------------------------- client <-> server

/// Moves bytes from a sender to a receiver, cut at the given points.
fn split_feed(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain(std::iter::once(wire.len())) {
        pieces.push(wire[last..p].to_vec());
        last = p;
    }
    pieces
}

#[derive(Debug, Clone)]
struct Msg {
    method_or_status: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Option<Vec<usize>>,
}

fn field_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[!-~]([ !-~]{0,30}[!-~])?"]
}

fn message(methods: Vec<&'static str>) -> impl Strategy<Value = Msg> {
    (
        proptest::sample::select(methods),
        "/[a-zA-Z0-9/._~%!$&'()*+,;=:@?-]{0,40}",
        proptest::collection::vec((field_name(), field_value()), 0..8),
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::option::of(proptest::collection::vec(1usize..700, 0..6)),
    )
        .prop_map(|(m, target, headers, body, chunks)| Msg {
            method_or_status: m.to_string(),
            target,
            headers,
            body,
            chunks,
        })
}

fn body_pieces(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = body;
    for &s in sizes {
        let n = s.min(rest.len());
        out.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
    }
    out.push(Bytes::copy_from_slice(rest));
    out
}

fn user_headers(h: &Headers) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .filter(|(n, _)| n.starts_with("x-"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A random valid request, encoded by the client and decoded by the server from random
    /// fragments, comes back the same (with and without streaming).
    #[test]
    fn request_round_trip(
        msg in message(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"]),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        threshold in prop_oneof![Just(0usize), Just(64), Just(1 << 16)],
    ) {
        let now = Instant::now();
        let mut client = ClientConnection::new(ClientConfig::default(), now);
        let mut req = Request::new(Method::from_token(msg.method_or_status.as_bytes()), Bytes::from(msg.target.clone()))
            .header("host", "example");
        for (n, v) in &msg.headers {
            req.headers_mut().append(Bytes::from(n.clone()), Bytes::from(v.clone()));
        }
        let id = match &msg.chunks {
            None => client.send_request(req.with_body(Body::Full(Bytes::from(msg.body.clone())))).unwrap(),
            Some(sizes) => {
                let id = client.send_request(req.with_body(Body::Stream)).unwrap();
                for piece in body_pieces(&msg.body, sizes) {
                    client.send_body_chunk(id, piece).unwrap();
                }
                client.finish_body(id, None).unwrap();
                id
            }
        };
        prop_assert_eq!(id, RequestId(0));
        let mut wire = Vec::new();
        while let Some(b) = client.poll_transmit(now) { wire.extend_from_slice(&b); }

        let limits = Limits { body_stream_threshold: threshold, ..Limits::default() };
        let mut server = ServerConnection::new(ServerConfig { limits, ..ServerConfig::default() }, now);
        let mut buf = BytesMut::new();
        let mut got: Option<Request> = None;
        let mut body = Vec::new();
        let mut ended = false;
        for piece in split_feed(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            while let Some(ev) = server.poll_event(&mut buf, now) {
                match ev {
                    ServerEvent::Request { request, .. } => {
                        if let Body::Full(b) = &request.body { body.extend_from_slice(b); ended = true; }
                        got = Some(request);
                    }
                    ServerEvent::BodyChunk { data, .. } => body.extend_from_slice(&data),
                    ServerEvent::BodyEnd { .. } => ended = true,
                    ServerEvent::Error { error, .. } => prop_assert!(false, "error {:?}", error),
                }
            }
        }
        let got = got.expect("request decoded");
        prop_assert!(ended);
        prop_assert_eq!(got.method.as_bytes(), msg.method_or_status.as_bytes());
        prop_assert_eq!(got.target(), msg.target.as_bytes());
        prop_assert_eq!(user_headers(got.headers()), msg.headers.clone());
        prop_assert_eq!(body, msg.body);
        prop_assert!(buf.is_empty());
    }

    /// A random valid response, encoded by the server and decoded by the client from random
    /// fragments, comes back the same.
    #[test]
    fn response_round_trip(
        msg in message(vec!["200", "201", "204", "301", "304", "404", "418", "500", "599"]),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        head in any::<bool>(),
    ) {
        let now = Instant::now();
        let mut server = ServerConnection::new(ServerConfig::default(), now);
        let method = if head { "HEAD" } else { "GET" };
        let input = format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = BytesMut::from(input.as_bytes());
        let Some(ServerEvent::Request { id, .. }) = server.poll_event(&mut buf, now) else {
            return Err(TestCaseError::fail("no request"));
        };
        let status: u16 = msg.method_or_status.parse().unwrap();
        let bodiless = status == 204 || status == 304;
        let body = if bodiless { Vec::new() } else { msg.body.clone() };
        let mut res = Response::new(status);
        for (n, v) in &msg.headers {
            res.headers.append(Bytes::from(n.clone()), Bytes::from(v.clone()));
        }
        match &msg.chunks {
            Some(sizes) if !bodiless => {
                server.send_response(id, res.with_body(Body::Stream)).unwrap();
                for piece in body_pieces(&body, sizes) {
                    server.send_body_chunk(id, piece).unwrap();
                }
                server.finish_body(id, None).unwrap();
            }
            _ => server.send_response(id, res.with_body(Body::Full(Bytes::from(body.clone())))).unwrap(),
        }
        let mut wire = Vec::new();
        while let Some(b) = server.poll_transmit(now) { wire.extend_from_slice(&b); }
        prop_assert!(!server.should_close());

        let mut client = ClientConnection::new(ClientConfig::default(), now);
        let req = Request::new(Method::from_token(method.as_bytes()), "/").header("host", "x");
        let cid = client.send_request(req).unwrap();
        let mut buf = BytesMut::new();
        let mut got: Option<Response> = None;
        let mut got_body = Vec::new();
        for piece in split_feed(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            while let Some(ev) = client.poll_event(&mut buf, now) {
                match ev {
                    ClientEvent::Response { id, response } => {
                        prop_assert_eq!(id, cid);
                        if let Body::Full(b) = &response.body { got_body.extend_from_slice(b); }
                        got = Some(response);
                    }
                    ClientEvent::BodyChunk { data, .. } => got_body.extend_from_slice(&data),
                    ClientEvent::BodyEnd { .. } => {}
                    ClientEvent::Error { error, .. } => prop_assert!(false, "error {:?}", error),
                    ClientEvent::Push { .. } => prop_assert!(false, "HTTP/1.1 has no pushes"),
                }
            }
        }
        let got = got.expect("response decoded");
        prop_assert_eq!(got.status, status);
        prop_assert_eq!(user_headers(&got.headers), msg.headers.clone());
        prop_assert_eq!(got_body, if head { Vec::new() } else { body });
        prop_assert!(client.is_reusable());
        prop_assert!(buf.is_empty());
    }

    /// Arbitrary bytes never panic the server, and the output stays bounded.
    #[test]
    fn arbitrary_input_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (mut c, now) = server_with(Limits { max_head_size: 512, max_request_line: 128, body_stream_threshold: 16, ..Limits::default() });
        let mut buf = BytesMut::new();
        for piece in split_feed(&data, &cuts) {
            buf.extend_from_slice(&piece);
            let evs = events(&mut c, &mut buf, now);
            for id in request_ids(&evs) {
                let _ = c.send_response(id, ok("x"));
            }
            let _ = output(&mut c, now);
            prop_assert!(buf.len() <= 512 + piece.len() + 2 || !c.wants_read());
        }
        let _ = c.on_timeout(now + Duration::from_secs(3600));
    }
}

/// Events as comparable strings (a request's `Debug` shows all of it, bytes included).
fn event_strings(evs: &[Event]) -> Vec<String> {
    evs.iter().map(|e| format!("{e:?}")).collect()
}

/// Feeds `input` in the given pieces to a fresh server and collects every event.
fn feed_pieces(limits: Limits, pieces: &[&[u8]]) -> Vec<Event> {
    let (mut c, now) = server_with(limits);
    let mut buf = BytesMut::new();
    let mut evs = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        evs.extend(events(&mut c, &mut buf, now));
    }
    evs
}

/// A line ending, mostly CRLF, sometimes one of the ways to get it wrong.
fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        30 => Just("\r\n"),
        1 => Just("\n"),
        1 => Just("\r"),
        1 => Just("\r\r\n"),
    ]
}

/// A request head close to valid, with the mistakes smuggling and limits care about: bare LF
/// or CR, obs-fold and whitespace before a field, space before the colon, double spaces in the
/// request line, bad bytes in the target and values, long lines, duplicate framing fields.
fn near_valid_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        4 => Just("GET"),
        1 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("HEAD"),
        1 => Just("M-X"),
        1 => Just("G:T"),
        1 => Just("")
    ];
    let sep = prop_oneof![20 => Just(" "), 1 => Just("  "), 1 => Just("\t")];
    let target = prop_oneof![
        8 => "/[a-z0-9?=%.*/]{0,40}",
        1 => "[/a-z0-9?=%.*é \\x00\\x7f]{0,24}",
    ];
    let version = prop_oneof![
        8 => Just("HTTP/1.1"),
        2 => Just("HTTP/1.0"),
        1 => Just("HTTP/2.0"),
        1 => Just("HTTP/1.1 ")
    ];
    let name = prop_oneof![
        1 => Just("host".to_string()),
        1 => Just("Content-Length".to_string()),
        1 => Just("Transfer-Encoding".to_string()),
        1 => Just("Connection".to_string()),
        1 => Just("Expect".to_string()),
        8 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,10}",
        1 => "[ \t]?[a-zA-Z@ ]{0,4}",
    ];
    let value = prop_oneof![
        1 => Just("x".to_string()),
        1 => Just("5".to_string()),
        1 => Just("chunked".to_string()),
        1 => Just("close".to_string()),
        1 => Just("100-continue".to_string()),
        4 => "[ \t]{0,2}[ -~]{0,30}[ \t]{0,2}",
        1 => "[ \t]{0,2}[ -~\t\\x80é\\x00]{0,16}[ \t]{0,2}",
    ];
    let colon = prop_oneof![20 => Just(":"), 1 => Just(" :"), 1 => Just("")];
    let field = (name, colon, value, line_end());
    let host = prop_oneof![8 => Just("Host: x\r\n"), 1 => Just("")];
    (
        prop_oneof![8 => Just(""), 1 => Just("\r\n"), 1 => Just("\n")],
        method,
        sep.clone(),
        target,
        sep,
        version,
        line_end(),
        host,
        proptest::collection::vec(field, 0..6),
        line_end(),
    )
        .prop_map(|(lead, m, s1, t, s2, v, eol, host, fields, end)| {
            let mut head = format!("{lead}{m}{s1}{t}{s2}{v}{eol}{host}");
            for (n, c, val, eol) in fields {
                head.push_str(&format!("{n}{c}{val}{eol}"));
            }
            head.push_str(end);
            head.into_bytes()
        })
}

/// An error a limit gives: byte-at-a-time input may cross a limit before the line that also
/// breaks another rule is complete, so these may stand in for a different error.
fn is_limit(e: &Event) -> bool {
    matches!(
        e,
        ServerEvent::Error {
            error: Http1Error::RequestLineTooLong { .. } | Http1Error::HeadTooLarge { .. },
            ..
        }
    )
}

#[test]
fn request_line_of_exactly_the_limit_passes_however_it_is_cut() {
    let limits = Limits {
        max_request_line: 14,
        ..Limits::default()
    };
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let whole = feed_pieces(limits, &[input]);
    assert!(
        matches!(whole[..], [ServerEvent::Request { .. }]),
        "{whole:?}"
    );
    for cut in 1..input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(
            event_strings(&feed_pieces(limits, &[a, b])),
            event_strings(&whole),
            "cut at {cut}"
        );
    }
    let longer = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    for cut in 1..longer.len() {
        let (a, b) = longer.split_at(cut);
        let evs = feed_pieces(limits, &[a, b]);
        assert!(
            matches!(
                evs[..],
                [ServerEvent::Error {
                    error: Http1Error::RequestLineTooLong { limit: 14 },
                    ..
                }]
            ),
            "cut at {cut}: {evs:?}"
        );
    }
}

#[test]
fn fast_path_hands_what_it_cannot_judge_to_the_scanner() {
    // Each is a whole head in one buffer (the one-pass path) that the scanner must judge,
    // checked against the same head cut after its first byte (the scanner's path).
    let limits = Limits {
        max_request_line: 20,
        max_head_size: 60,
        ..Limits::default()
    };
    let cases: &[(&[u8], Http1Error)] = &[
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", Http1Error::BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", Http1Error::BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", Http1Error::BareLf),
        (b"GET / HTTP/1.1\r\n\n", Http1Error::BareLf),
        (
            b"GET /aaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n",
            Http1Error::RequestLineTooLong { limit: 20 },
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            Http1Error::HeadTooLarge { limit: 60 },
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            Http1Error::ObsFold,
        ),
        (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", Http1Error::ObsFold),
    ];
    for (input, want) in cases {
        let whole = feed_pieces(limits, &[input]);
        let cut = feed_pieces(limits, &[&input[..1], &input[1..]]);
        assert_eq!(event_strings(&whole), event_strings(&cut));
        assert!(
            matches!(&whole[..], [ServerEvent::Error { error, .. }] if error == want),
            "{}: {whole:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Bare LF where the policy allows it: accepted by both paths alike.
    let lax = Limits {
        line_endings: LineEndingPolicy::AllowBareLf,
        ..limits
    };
    let input: &[u8] = b"GET / HTTP/1.1\nHost: x\r\nA: b\n\n";
    let whole = feed_pieces(lax, &[input]);
    assert!(
        matches!(whole[..], [ServerEvent::Request { .. }]),
        "{whole:?}"
    );
    assert_eq!(
        event_strings(&whole),
        event_strings(&feed_pieces(lax, &[&input[..1], &input[1..]]))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// A head parsed in one pass from a whole buffer gives exactly what the scanner-then-parse
    /// path gives (the same head cut after its first byte), error for error; fed one byte at a
    /// time it gives the same requests and rejects the same heads (a limit error may stand in
    /// for another error there, as the limit is crossed before the offending line ends).
    #[test]
    fn one_pass_parse_matches_the_scanner(
        head in near_valid_head(),
        follow in proptest::bool::ANY,
        max_request_line in 8usize..64,
        max_head_size in 16usize..160,
        max_headers in 1usize..6,
        bare_lf in proptest::bool::ANY,
    ) {
        let limits = Limits {
            max_request_line,
            max_head_size,
            max_headers,
            line_endings: if bare_lf { LineEndingPolicy::AllowBareLf } else { LineEndingPolicy::RequireCrlf },
            ..Limits::default()
        };
        let mut input = head;
        if follow {
            input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: y\r\n\r\n");
        }
        let whole = feed_pieces(limits, &[&input]);
        // Cut after the first byte of the request line, so the scanner sees the head.
        let cut = input.iter().position(|&b| b != b'\r' && b != b'\n').map_or(input.len(), |p| p + 1);
        let scanned = feed_pieces(limits, &[&input[..cut], &input[cut..]]);
        prop_assert_eq!(event_strings(&whole), event_strings(&scanned));
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let one_byte = feed_pieces(limits, &bytes);
        prop_assert_eq!(whole.len(), one_byte.len(), "{:?} vs {:?}", whole, one_byte);
        for (w, b) in whole.iter().zip(&one_byte) {
            if !(is_limit(w) || is_limit(b)) || !matches!(w, ServerEvent::Error { .. }) {
                prop_assert_eq!(format!("{w:?}"), format!("{b:?}"));
            } else {
                prop_assert!(matches!(b, ServerEvent::Error { .. }), "{:?} vs {:?}", w, b);
            }
        }
    }
}

/// One answer of [`plain_answers_write_what_the_general_encoder_writes`].
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    reason: bool,
    fields: u8,
    body: usize,
    stream: bool,
}

fn answer_strategy() -> impl Strategy<Value = Answer> {
    (
        prop::sample::select(vec![100u16, 200, 201, 204, 299, 304, 404, 500, 503]),
        any::<bool>(),
        0u8..8,
        prop::sample::select(vec![0usize, 1, 13, 1024, 1025, 3000]),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(status, reason, fields, body, stream)| Answer {
            status,
            reason,
            fields,
            body,
            stream,
        })
}

fn build_answer(a: &Answer, block: &FieldBlock, other: &FieldBlock) -> Response {
    let mut r = Response::new(a.status);
    if a.reason {
        r.reason = Bytes::from_static(b"Custom");
    }
    r = match a.fields {
        0 => r,
        1 => r.with_fields(block),
        2 => r.header("x-a", "1").header("content-type", "text/plain"),
        3 => r.with_fields(block).header("x-b", "2"),
        4 => r.header("connection", "close"),
        5 => r.header("date", "Mon, 07 Nov 1994 08:49:37 GMT"),
        // A block of the same length as `block`, other bytes: the head cache must tell them
        // apart.
        6 => r.with_fields(other),
        // The same bytes as `block` in a block of its own.
        _ => r.with_fields(
            &FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")]).expect("valid"),
        ),
    };
    if a.stream {
        r.with_body(Body::Stream)
    } else {
        r.with_body(Body::Full(Bytes::from(vec![b'x'; a.body])))
    }
}

proptest! {
    /// The short way for common answers (`send_plain`) writes byte for byte what the general
    /// encoder writes, leaves the connection in the same state, and fails the same way, for
    /// any mix of requests (HEAD, HTTP/1.0, `Connection: close`), answers in any order, and
    /// answers it must refuse (a body on 204/304, 1xx, parsed fields).
    #[test]
    fn plain_answers_write_what_the_general_encoder_writes(
        kinds in prop::collection::vec(0u8..4, 1..10),
        answers in prop::collection::vec(answer_strategy(), 6),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        send_date in any::<bool>(),
    ) {
        let block = FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")])
            .expect("valid");
        let other = FieldBlock::new([("server", "sinew"), ("content-type", "text/plaim")])
            .expect("valid");
        let mut input = Vec::new();
        for k in &kinds {
            input.extend_from_slice(match k {
                0 => &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                1 => b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
                2 => b"GET /a HTTP/1.0\r\n\r\n",
                _ => b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            });
        }
        let now = Instant::now();
        let config = ServerConfig { send_date, ..ServerConfig::default() };
        let mut short = ServerConnection::new(config, now);
        let mut general = ServerConnection::new(config, now);
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        short.set_date(at);
        general.set_date(at);
        let ids = request_ids(&feed(&mut short, &input, now));
        prop_assert_eq!(&ids, &request_ids(&feed(&mut general, &input, now)));
        // Answer in a shuffled order (a rotation picked by `order`, then reversed halves).
        let mut seq: Vec<usize> = (0..ids.len()).collect();
        seq.rotate_left((order % ids.len().max(1) as u64) as usize);
        if order & 1 == 1 {
            seq.reverse();
        }
        for (n, &i) in seq.iter().enumerate() {
            let a = &answers[n % answers.len()];
            let r1 = short.send_response(ids[i], build_answer(a, &block, &other));
            let r2 = general.send_response_general(ids[i], build_answer(a, &block, &other));
            prop_assert_eq!(&r1, &r2, "answer {:?} to request {}", a, i);
            if a.stream && r1.is_ok() {
                prop_assert_eq!(short.finish_body(ids[i], None), general.finish_body(ids[i], None));
            }
            prop_assert_eq!(output(&mut short, now), output(&mut general, now));
            prop_assert_eq!(short.in_flight(), general.in_flight());
            prop_assert_eq!(short.should_close(), general.should_close());
        }
    }
}

/// The head cache of the short way is keyed on everything that shapes the head: a run of
/// in-order answers that change one part at a time (the field block for another of the same
/// length, the block for an equal copy, the status, the body's length, no fields, the second
/// of the date, a date or none) writes what the general encoder writes, answer by answer.
#[test]
fn the_short_ways_head_cache_follows_every_change() {
    let a = FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")]).unwrap();
    let b = FieldBlock::new([("server", "sinew"), ("content-type", "text/plaim")]).unwrap();
    let a_again = FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")]).unwrap();
    let body = |n: usize| Body::Full(Bytes::from(vec![b'x'; n]));
    let answers: Vec<Response> = vec![
        Response::new(200).with_fields(&a).with_body(body(13)),
        Response::new(200).with_fields(&a).with_body(body(13)),
        Response::new(200).with_fields(&a).with_body(body(13)),
        Response::new(200).with_fields(&b).with_body(body(13)),
        Response::new(200).with_fields(&a_again).with_body(body(13)),
        Response::new(404).with_fields(&a_again).with_body(body(13)),
        Response::new(404).with_fields(&a_again).with_body(body(14)),
        Response::new(404).with_body(body(14)),
        Response::new(200).with_body(body(14)),
        Response::new(200).with_fields(&a).with_body(body(0)),
        Response::new(200).with_fields(&a).with_body(body(13)),
    ];
    for send_date in [true, false] {
        let now = Instant::now();
        let config = ServerConfig {
            send_date,
            ..ServerConfig::default()
        };
        let mut short = ServerConnection::new(config, now);
        let mut general = ServerConnection::new(config, now);
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        short.set_date(at);
        general.set_date(at);
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".repeat(answers.len());
        let ids = request_ids(&feed(&mut short, &input, now));
        assert_eq!(ids, request_ids(&feed(&mut general, &input, now)));
        for (n, (id, answer)) in ids.iter().zip(&answers).enumerate() {
            if n == 2 {
                // The next second: same answer, another `Date`.
                short.set_date(at + Duration::from_secs(1));
                general.set_date(at + Duration::from_secs(1));
            }
            short.send_response(*id, answer.clone()).unwrap();
            general.send_response_general(*id, answer.clone()).unwrap();
            assert_eq!(
                output(&mut short, now),
                output(&mut general, now),
                "{answer:?}"
            );
        }
    }
}

#[test]
fn the_wall_clock_is_asked_for_once_a_second() {
    use crate::protocol::ServerCodec;
    let now = Instant::now();
    let mut c = ServerConnection::new(ServerConfig::default(), now);
    assert!(c.wants_wall_clock(now), "no date yet");
    // 0.75 s into a second: the date holds for the quarter second left.
    let wall = UNIX_EPOCH + Duration::from_millis(784_111_777_750);
    c.set_wall_clock(wall, now);
    assert!(!c.wants_wall_clock(now));
    assert!(!c.wants_wall_clock(now + Duration::from_millis(249)));
    assert!(c.wants_wall_clock(now + Duration::from_millis(250)));
    // Without a Date header there is nothing to ask for.
    let quiet = ServerConnection::new(
        ServerConfig {
            send_date: false,
            ..ServerConfig::default()
        },
        now,
    );
    assert!(!quiet.wants_wall_clock(now));
}
