//! Interop with real peers: nginx as a server for `ClientConn` and as the upstream of the
//! reverse proxy; curl through the proxy to a Sinew upstream; 502 and 504 from the proxy.
//!
//! nginx runs from a private temp dir (its own nginx.conf, pid, logs and temp paths; nothing
//! under /etc or /var), in the foreground without a master process, on free 127.0.0.1 ports.
//! The test starts it, waits until it accepts connections, and kills it when done (also when
//! the test fails). Install it with `apt-get install -y nginx` (listed in
//! .ci/apt-packages.txt).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_actors::{Actor, Addr, Context, System};
use sinew_io_actors::{
    io_driver, serve, ClientConn, ClientMsg, IncomingFor, Proxy, ProxyConfig, ProxyMsg, ProxyStats,
    ServerConfig,
};
use sinew_protocols::http1::{Body, Http1, Method, Request, Response};
use sinew_transports::Backend;

// ---- nginx, started and stopped by the test ------------------------------------------------

/// A private nginx: killed and its directory removed on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    /// A server with nginx's default keep-alive (1000 requests per connection).
    port: u16,
    /// A server that closes each connection after 10 requests (`Connection: close` on the 10th).
    short_port: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Static file contents: 32 KiB (under the client's whole-body threshold) and 200 KiB (over
/// it; the proxy raises its threshold so it still relays the file whole).
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27])
        .collect()
}

impl Nginx {
    fn start() -> Nginx {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sinew-nginx-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("create nginx dir");
        std::fs::write(www.join("small.txt"), file_bytes(32 * 1024)).expect("write file");
        std::fs::write(www.join("large.txt"), file_bytes(200 * 1024)).expect("write file");
        let (port, short_port) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /hello {{ return 200 "hello from nginx\n"; }}
        location = /headers {{ return 200 "connection=[$http_connection] x-drop=[$http_x_drop] x-test=[$http_x_test] host=[$host]\n"; }}
        location = /method {{ return 200 "$request_method\n"; }}
        location /static/ {{ alias {d}/www/; }}
    }}
    server {{
        listen 127.0.0.1:{short_port};
        keepalive_requests 10;
        location = /hello {{ return 200 "hello from nginx\n"; }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx is installed (apt-get install -y nginx)");
        let mut nginx = Nginx {
            child,
            dir,
            port,
            short_port,
        };
        nginx.wait_ready();
        nginx
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn short_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.short_port).into()
    }

    /// Polls a connect to both ports until they accept (or nginx exits: then fail with its log).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {err}\n{log}");
            }
            let up = [self.addr(), self.short_addr()]
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(100)).is_ok());
            if up {
                return;
            }
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- helpers ---------------------------------------------------------------------------------

fn system(backend: Backend) -> System {
    System::builder()
        .workers(2)
        .try_driver(io_driver(backend))
        .build()
        .expect("system")
}

fn call(client: &Addr<ClientConn<Http1>>, req: Request) -> Response {
    futures::executor::block_on(client.ask(|r| ClientMsg::Call(req, r)))
        .expect("answered")
        .expect("response")
}

fn body(resp: &Response) -> &[u8] {
    match &resp.body {
        Body::Full(b) => b,
        Body::Stream => panic!("expected a whole body, got a streamed one"),
    }
}

/// Starts a proxy to `upstream` served on an ephemeral port; returns its address.
fn start_proxy(sys: &System, config: ProxyConfig) -> (Addr<Proxy>, SocketAddr) {
    let proxy = sys.spawn(Proxy::new(config)).expect("proxy");
    let addr = serve(
        &sys.handle(),
        Http1::default(),
        "127.0.0.1:0".parse().expect("addr"),
        0..2,
        Proxy::handler(&proxy),
        ServerConfig::default(),
    )
    .expect("serve");
    (proxy, addr)
}

fn stats(proxy: &Addr<Proxy>) -> ProxyStats {
    futures::executor::block_on(proxy.ask(ProxyMsg::Stats)).expect("stats")
}

/// Runs curl; returns (status line code, body) via `-w`.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_of(url: &str) -> String {
    curl(&["-o", "/dev/null", "-w", "%{http_code}", url])
}

// ---- ClientConn against nginx ---------------------------------------------------------------

fn client_against_nginx(backend: Backend) {
    let nginx = Nginx::start();
    let sys = system(backend);
    let client = sys
        .spawn(ClientConn::new(Http1::default(), nginx.addr()))
        .expect("client");

    // Many concurrent callers pipelined over one keep-alive connection.
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let path = if i % 3 == 0 { "/method" } else { "/hello" };
            let req = Request::new(Method::Get, path).header("host", "localhost");
            let c = client.clone();
            std::thread::spawn(move || call(&c, req))
        })
        .collect();
    for (i, h) in calls.into_iter().enumerate() {
        let resp = h.join().expect("caller thread");
        assert_eq!(resp.status, 200);
        let want: &[u8] = if i % 3 == 0 {
            b"GET\n"
        } else {
            b"hello from nginx\n"
        };
        assert_eq!(body(&resp), want);
        assert_eq!(
            resp.headers.get("server").map(|s| &s[..5]),
            Some(&b"nginx"[..])
        );
    }

    // A file with Content-Length, a HEAD (no body follows, the connection stays usable), a
    // POST with a body, and a 404: all on the same connection.
    let small = call(
        &client,
        Request::new(Method::Get, "/static/small.txt").header("host", "localhost"),
    );
    assert_eq!(small.status, 200);
    assert_eq!(body(&small), &file_bytes(32 * 1024)[..]);
    let head = call(
        &client,
        Request::new(Method::Head, "/static/small.txt").header("host", "localhost"),
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers.get("content-length"),
        Some(&b"32768"[..]),
        "HEAD keeps the entity's length"
    );
    assert!(body(&head).is_empty());
    let post = call(
        &client,
        Request::new(Method::Post, "/method")
            .header("host", "localhost")
            .with_body(Body::Full(Bytes::from_static(b"payload"))),
    );
    assert_eq!(body(&post), b"POST\n");
    let missing = call(
        &client,
        Request::new(Method::Get, "/static/missing").header("host", "localhost"),
    );
    assert_eq!(missing.status, 404);
    assert!(
        client.is_alive(),
        "one keep-alive connection served all calls"
    );
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}

#[test]
fn client_conn_against_nginx_over_mio() {
    client_against_nginx(Backend::Mio);
}

#[test]
fn client_conn_against_nginx_over_io_uring() {
    client_against_nginx(Backend::Uring);
}

// ---- the proxy in front of nginx ------------------------------------------------------------

fn proxy_to_nginx(backend: Backend) {
    let nginx = Nginx::start();
    let sys = system(backend);
    let (proxy, addr) = start_proxy(&sys, ProxyConfig::new(nginx.addr()));
    let base = format!("http://{addr}");

    assert_eq!(curl(&[&format!("{base}/hello")]), "hello from nginx\n");
    assert_eq!(
        curl(&["-X", "DELETE", &format!("{base}/method")]),
        "DELETE\n"
    );
    assert_eq!(status_of(&format!("{base}/static/missing")), "404");
    // Over the client's streaming threshold: the proxy relays it whole.
    let large = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("{base}/static/large.txt"),
        ])
        .output()
        .expect("curl");
    assert!(large.status.success());
    assert_eq!(large.stdout, file_bytes(200 * 1024));

    // Hop-by-hop fields stop at the proxy (and the fields `Connection` names); end-to-end
    // fields and Host go through.
    let echoed = curl(&[
        "-H",
        "Connection: keep-alive, X-Drop",
        "-H",
        "X-Drop: secret",
        "-H",
        "X-Test: kept",
        "-H",
        "Host: example.test",
        &format!("{base}/headers"),
    ]);
    assert_eq!(
        echoed,
        "connection=[] x-drop=[] x-test=[kept] host=[example.test]\n"
    );

    // Keep-alive downstream, many requests in one curl run.
    let urls: Vec<String> = (0..20).map(|_| format!("{base}/hello")).collect();
    let mut args = vec!["-s"];
    args.extend(urls.iter().map(String::as_str));
    assert_eq!(curl(&args), "hello from nginx\n".repeat(20));

    let s = stats(&proxy);
    assert_eq!(s.bad_gateway + s.timeouts, 0, "{s:?}");
    assert_eq!((s.requests, s.relayed), (25, 25), "{s:?}");
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
    drop(nginx);
}

#[test]
fn proxy_to_nginx_over_mio() {
    proxy_to_nginx(Backend::Mio);
}

#[test]
fn proxy_to_nginx_over_io_uring() {
    proxy_to_nginx(Backend::Uring);
}

#[test]
fn proxy_survives_upstream_closing_keep_alive_connections() {
    // This nginx server closes each connection after 10 requests: the proxy's connections go
    // away under load and requests caught on a closing connection are retried on a new one.
    let nginx = Nginx::start();
    let sys = system(Backend::Auto);
    let mut config = ProxyConfig::new(nginx.short_addr());
    config.connections = 2;
    let (proxy, addr) = start_proxy(&sys, config);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut got = 0;
                for _ in 0..15 {
                    // Pipeline 4 requests at a time over one downstream connection.
                    s.write_all(&b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4))
                        .expect("write");
                    got += read_responses(&mut s, 4, "hello from nginx\n");
                }
                got
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    let s = stats(&proxy);
    let total: usize = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|_| panic!("a client failed; proxy {s:?}")))
        .sum();
    assert_eq!(total, 4 * 15 * 4, "every request answered 200 by nginx");
    assert!(s.connects >= 240 / 10, "connections were replaced: {s:?}");
    assert_eq!(s.bad_gateway + s.timeouts, 0, "{s:?}");
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}

/// Reads `n` responses, each 200 with body `want`; returns how many.
fn read_responses(s: &mut TcpStream, n: usize, want: &str) -> usize {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut done = 0;
    while done < n {
        let text = String::from_utf8_lossy(&buf).into_owned();
        let complete = text.matches(want).count();
        if complete >= n {
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), n, "{text}");
            done = n;
            continue;
        }
        let r = s.read(&mut chunk).expect("read a response");
        assert!(r > 0, "proxy closed early after {complete}: {text:?}");
        buf.extend_from_slice(&chunk[..r]);
    }
    done
}

// ---- curl through the proxy to a Sinew upstream; 502 and 504 ---------------------------------

/// The upstream application: plaintext, json, and an echo of POST bodies.
struct Upstream;

impl Actor for Upstream {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        let resp = match (&inc.request.method, inc.request.target()) {
            (Method::Get, b"/plaintext") => Response::new(200)
                .header("content-type", "text/plain")
                .with_body(Body::Full(Bytes::from_static(b"Hello, World!"))),
            (Method::Get, b"/json") => Response::new(200)
                .header("content-type", "application/json")
                .with_body(Body::Full(Bytes::from_static(
                    br#"{"message":"Hello, World!"}"#,
                ))),
            (Method::Post, b"/echo") => Response::new(201).with_body(inc.request.body.clone()),
            _ => Response::new(404),
        };
        inc.reply.send(resp);
    }
}

fn curl_through_proxy_to_sinew(backend: Backend) {
    let sys = system(backend);
    let app = sys.spawn(Upstream).expect("app");
    let upstream = serve(
        &sys.handle(),
        Http1::default(),
        "127.0.0.1:0".parse().expect("addr"),
        0..2,
        app.recipient(),
        ServerConfig::default(),
    )
    .expect("upstream");
    let (proxy, addr) = start_proxy(&sys, ProxyConfig::new(upstream));
    let base = format!("http://{addr}");
    assert_eq!(curl(&[&format!("{base}/plaintext")]), "Hello, World!");
    let many = curl(&[
        &format!("{base}/plaintext"),
        &format!("{base}/json"),
        &format!("{base}/plaintext"),
    ]);
    assert_eq!(
        many,
        r#"Hello, World!{"message":"Hello, World!"}Hello, World!"#
    );
    assert_eq!(
        curl(&["--data-binary", "ping body", &format!("{base}/echo")]),
        "ping body"
    );
    assert_eq!(status_of(&format!("{base}/echo")), "404", "GET /echo");
    let s = stats(&proxy);
    assert_eq!((s.requests, s.relayed, s.bad_gateway), (6, 6, 0), "{s:?}");
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}

#[test]
fn curl_through_proxy_to_sinew_over_mio() {
    curl_through_proxy_to_sinew(Backend::Mio);
}

#[test]
fn curl_through_proxy_to_sinew_over_io_uring() {
    curl_through_proxy_to_sinew(Backend::Uring);
}

#[test]
fn proxy_answers_502_when_the_upstream_is_unreachable() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let sys = system(Backend::Auto);
    let (proxy, addr) = start_proxy(&sys, ProxyConfig::new(dead));
    let base = format!("http://{addr}");
    assert_eq!(status_of(&format!("{base}/a")), "502");
    assert_eq!(curl(&[&format!("{base}/b")]), "bad gateway\n");
    // POST is not retried; GET is retried once on a fresh connection.
    assert_eq!(
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-d",
            "x",
            &format!("{base}/c")
        ]),
        "502"
    );
    let s = stats(&proxy);
    assert_eq!(s.bad_gateway, 3, "{s:?}");
    assert_eq!(s.retries, 2, "{s:?}");
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}

#[test]
fn proxy_answers_504_when_the_upstream_is_too_slow() {
    // An upstream that accepts and reads but never answers.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let slow = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            held.push(s);
        }
    });
    let sys = system(Backend::Auto);
    let mut config = ProxyConfig::new(slow);
    config.timeout = Duration::from_millis(300);
    let (proxy, addr) = start_proxy(&sys, config);
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("an answer, not a hang");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let st = stats(&proxy);
    assert_eq!((st.timeouts, st.bad_gateway), (1, 0), "{st:?}");
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}
