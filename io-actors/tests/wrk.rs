//! Interop with wrk, the load generator the HTTP benchmark uses: plain and 16-deep pipelined
//! load against the Sinew server on both backends completes with every response a 200 and
//! no socket errors. (Throughput is measured by `sinew-bench http`, never asserted here.)

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use sinew_actors::{Actor, Context, System};
use sinew_io_actors::{io_driver, serve, IncomingFor, ServerConfig};
use sinew_protocols::http1::{Body, Http1, Response};
use sinew_transports::Backend;

struct Plaintext;

impl Actor for Plaintext {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        let resp = match inc.request.target() {
            b"/plaintext" => Response::new(200)
                .header("content-type", "text/plain")
                .with_body(Body::Full(Bytes::from_static(b"Hello, World!"))),
            _ => Response::new(404),
        };
        inc.reply.send(resp);
    }
}

fn server(backend: Backend) -> (System, SocketAddr) {
    let sys = System::builder()
        .workers(1)
        .try_driver(io_driver(backend))
        .build()
        .expect("system");
    let app = sys.spawn(Plaintext).expect("app");
    let addr = serve(
        &sys.handle(),
        Http1::default(),
        "127.0.0.1:0".parse().unwrap(),
        0..1,
        app.recipient(),
        ServerConfig::default(),
    )
    .expect("serve");
    (sys, addr)
}

/// Runs wrk for one second; returns (requests, its report).
fn wrk(addr: SocketAddr, script: Option<&std::path::Path>) -> (u64, String) {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c8", "-d1s"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(format!("http://{addr}/plaintext"))
        .output()
        .expect("wrk is installed by .ci/run (apt: wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {out:?}");
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {text}"));
    (requests, text)
}

#[test]
fn wrk_plain_and_pipelined_get_only_200s() {
    let script = std::env::temp_dir().join(format!("sinew-wrk-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        "init = function(args)\n  local r = {}\n  for i = 1, 16 do r[i] = wrk.format(nil, \"/plaintext\") end\n  req = table.concat(r)\nend\nrequest = function() return req end\n",
    )
    .expect("write the pipelining script");
    for backend in [Backend::Auto, Backend::Mio] {
        let (sys, addr) = server(backend);
        for s in [None, Some(script.as_path())] {
            let (requests, report) = wrk(addr, s);
            assert!(requests > 0, "{report}");
            assert!(!report.contains("Non-2xx"), "{backend:?}: {report}");
            assert!(!report.contains("Socket errors"), "{backend:?}: {report}");
        }
        sys.shutdown(Duration::from_secs(5));
    }
    let _ = std::fs::remove_file(&script);
}
