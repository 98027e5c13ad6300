//! Sinew: the `examples/http_hello.rs` application behind `sinew_io_actors::serve`, as an
//! actor (the reference path) or answering inline on the connections' turns.

use std::net::SocketAddr;

use bytes::Bytes;
use sinew_actors::{Actor, Context, System};
use sinew_io_actors::{io_driver, serve as serve_http, IncomingFor, Routes, ServerConfig};
use sinew_protocols::http1::{Body, FieldBlock, Http1, Request, Response};
use sinew_transports::Backend;

use super::{JSON_BODY, PLAINTEXT_BODY};

/// Answers `/plaintext` and `/json` (the same actor as the example): the header fields of
/// each answer are validated and encoded once, at start, and shared by every response.
#[derive(Clone)]
struct Hello {
    plaintext: FieldBlock,
    json: FieldBlock,
}

impl Hello {
    fn new() -> Result<Self, String> {
        let block = |content_type: &str| {
            FieldBlock::new([("server", "sinew"), ("content-type", content_type)])
                .map(FieldBlock::into_static)
                .map_err(|e| format!("header fields: {e}"))
        };
        Ok(Hello {
            plaintext: block("text/plain")?,
            json: block("application/json")?,
        })
    }

    #[inline]
    fn answer(&self, request: &Request) -> Response {
        match request.target() {
            b"/plaintext" => Response::new(200)
                .with_fields(&self.plaintext)
                .with_body(Body::Full(Bytes::from_static(PLAINTEXT_BODY.as_bytes()))),
            b"/json" => Response::new(200)
                .with_fields(&self.json)
                .with_body(Body::Full(Bytes::from_static(JSON_BODY.as_bytes()))),
            _ => Response::new(404),
        }
    }
}

impl Actor for Hello {
    type Msg = IncomingFor<Http1>;

    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        let resp = self.answer(&inc.request);
        inc.reply.send(resp);
    }
}

/// Serves on `addr` with one pinned worker parked in a `backend` reactor, until killed. With
/// `inline`, the connections answer on their own turn ([`Routes::answer_inline`]) with the
/// same code the actor runs, and the actor gets nothing.
pub fn serve(backend: Backend, addr: SocketAddr, inline: bool) -> Result<(), String> {
    let system = System::builder()
        .workers(1)
        .pin_workers(true)
        .try_driver(io_driver(backend))
        .build()
        .map_err(|e| format!("sinew system on {backend}: {e}"))?;
    let hello = Hello::new()?;
    let app = system
        .spawn(hello.clone())
        .map_err(|e| format!("spawn the application actor: {e}"))?;
    let mut routes = Routes::single(app.recipient());
    if inline {
        routes = routes.answer_inline(move |request| Some(hello.answer(request)));
    }
    serve_http(
        &system.handle(),
        Http1::default(),
        addr,
        0..system.workers(),
        routes,
        ServerConfig::default(),
    )
    .map_err(|e| format!("serve on {addr}: {e}"))?;
    system.join();
    Ok(())
}
