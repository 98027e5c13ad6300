//! may_minihttp on one may worker.

use std::io;
use std::net::SocketAddr;

use may_minihttp::{HttpServer, HttpService, Request, Response};

use super::{JSON_BODY, PLAINTEXT_BODY};

/// Answers `/plaintext` and `/json` (may_minihttp adds `Server` and `Date`).
#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        match req.path() {
            "/plaintext" => {
                rsp.header("Content-Type: text/plain").body(PLAINTEXT_BODY);
            }
            "/json" => {
                rsp.header("Content-Type: application/json").body(JSON_BODY);
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

/// Serves on `addr` with one may worker until killed.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    may::config().set_workers(1);
    let server = HttpServer(Hello)
        .start(addr)
        .map_err(|e| format!("may_minihttp on {addr}: {e}"))?;
    server
        .join()
        .map_err(|_| "the may_minihttp server coroutine panicked".to_string())
}
