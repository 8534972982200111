//! The router over real loopback TCP: a router on 127.0.0.1, upstreams that are small hyper
//! servers (or a raw socket, or a websocket server) in this process, and a hyper client.
//! These are the behaviours that only show on the wire: streaming, keep-alive pools and their
//! races, retries, live table swaps, upgrades. The pure decisions are unit tested in the
//! router's modules.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gantry_orchestrator::router::{
    AppSpec, EndpointSpec, RouteSpec, Router, RouterConfig, SetSpec,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

type TestBody = UnsyncBoxBody<Bytes, Infallible>;
type ServerBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Every await on the network goes through this, so a hang fails the test instead of stalling it.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `cond` until it holds or the deadline passes.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------- the router under test ----------

struct TestRouter {
    router: Arc<Router>,
    addr: SocketAddr,
    /// Dropping it starts the router's graceful shutdown.
    shutdown: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_router(config: RouterConfig) -> TestRouter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(router.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    TestRouter {
        router,
        addr,
        shutdown: Some(tx),
        served,
    }
}

async fn default_router() -> TestRouter {
    start_router(RouterConfig::default()).await
}

fn app(id: u128, app: &str, sets: Vec<SetSpec>) -> AppSpec {
    AppSpec {
        app_id: Uuid::from_u128(id),
        team: "acme".into(),
        app: app.into(),
        sets,
        preview: None,
        sticky: false,
    }
}

/// `app` with its `version` set also served at its preview host.
fn with_preview(app: AppSpec, version: u32) -> AppSpec {
    AppSpec {
        preview: Some(release_id(version)),
        ..app
    }
}

fn sticky(app: AppSpec) -> AppSpec {
    AppSpec {
        sticky: true,
        ..app
    }
}

fn release_id(version: u32) -> Uuid {
    Uuid::from_u128(u128::from(version) << 64)
}

fn set(version: u32, weight: Option<u32>, endpoints: &[&TestUpstream]) -> SetSpec {
    SetSpec {
        release_id: release_id(version),
        version,
        weight,
        endpoints: endpoints.iter().map(|u| u.endpoint()).collect(),
    }
}

fn spec(apps: Vec<AppSpec>) -> RouteSpec {
    RouteSpec { apps }
}

// ---------- upstreams ----------

/// A hyper server answering its own name, with a few behaviours by path.
struct TestUpstream {
    instance: Uuid,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    /// Releases a `/slow` answer or the rest of a `/stream` body.
    gate: Arc<Notify>,
}

impl TestUpstream {
    fn endpoint(&self) -> EndpointSpec {
        EndpointSpec {
            instance: self.instance,
            addr: self.addr,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn last_headers(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

fn next_instance() -> Uuid {
    Uuid::from_u128(NEXT_INSTANCE.fetch_add(1, Ordering::SeqCst) as u128)
}

async fn upstream(name: &'static str) -> TestUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = TestUpstream {
        instance: next_instance(),
        addr: listener.local_addr().unwrap(),
        accepted: Arc::default(),
        seen: Arc::default(),
        gate: Arc::default(),
    };
    let (accepted, seen, gate) = (up.accepted.clone(), up.seen.clone(), up.gate.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (seen, gate) = (seen.clone(), gate.clone());
            let service = service_fn(move |req| answer(name, req, seen.clone(), gate.clone()));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    up
}

fn full(body: impl Into<Bytes>) -> ServerBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    gate: Arc<Notify>,
) -> Result<Response<ServerBody>, Infallible> {
    seen.lock().unwrap().push(req.headers().clone());
    let body = match req.uri().path() {
        // Echoes the request body as it arrives.
        "/echo" => req.into_body().boxed_unsync(),
        "/slow" => {
            gate.notified().await;
            full(name)
        }
        // The app sets a cookie of its own.
        "/set-cookie" => {
            let mut res = Response::new(full(name));
            res.headers_mut()
                .insert("set-cookie", HeaderValue::from_static("app=1; Path=/"));
            return Ok(res);
        }
        // One chunk, then the rest only when the test opens the gate: proves the first chunk
        // reached the client before the upstream finished.
        "/stream" => {
            let chunks = futures_util::stream::unfold(0u32, move |i| {
                let gate = gate.clone();
                async move {
                    match i {
                        0 => Some((Ok(Frame::data(Bytes::from_static(b"first;"))), 1)),
                        1..=64 => {
                            if i == 1 {
                                gate.notified().await;
                            }
                            Some((Ok(Frame::data(Bytes::from(vec![b'x'; 256 * 1024]))), i + 1))
                        }
                        _ => None,
                    }
                }
            });
            StreamBody::new(chunks).boxed_unsync()
        }
        _ => full(name),
    };
    Ok(Response::new(body))
}

/// An upstream that closes every connection right after each response, without saying
/// `Connection: close`: every pooled connection it leaves is already dead.
async fn closing_upstream() -> (EndpointSpec, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nclosed")
                    .await;
                // Dropping the stream closes it.
            });
        }
    });
    let endpoint = EndpointSpec {
        instance: next_instance(),
        addr,
    };
    (endpoint, accepted)
}

/// A port nobody listens on: connecting is refused.
async fn refused_endpoint() -> EndpointSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    EndpointSpec {
        instance: next_instance(),
        addr,
    }
}

// ---------- the client ----------

/// One keep-alive client connection to the router.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    async fn send(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        within("client ready", self.sender.ready()).await.unwrap();
        within("response", self.sender.send_request(req))
            .await
            .unwrap()
    }

    /// GET and read the whole body.
    async fn get(&mut self, host: &str, path: &str) -> (StatusCode, HeaderMap, String) {
        self.get_with_cookie(host, path, None).await
    }

    /// GET with a `Cookie` header (when given) and read the whole body.
    async fn get_with_cookie(
        &mut self,
        host: &str,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = request(Method::GET, host, path, empty());
        if let Some(cookie) = cookie {
            req.headers_mut()
                .insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        let res = self.send(req).await;
        let (parts, body) = res.into_parts();
        let body = within("body", body.collect()).await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

fn empty() -> TestBody {
    Empty::new().boxed_unsync()
}

fn request(method: Method, host: &str, path: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(body)
        .unwrap()
}

const HELLO: &str = "hello.acme.localhost";
const PREVIEW: &str = "preview.hello.acme.localhost";

/// Every `Set-Cookie` of a response.
fn set_cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The router's `Set-Cookie` assigning a client to the set of `version`.
fn assigned(version: u32) -> String {
    format!("gantry_release={version}; Path=/; HttpOnly; SameSite=Lax")
}

// ---------- tests ----------

#[tokio::test]
async fn requests_go_to_the_app_and_release_their_host_names() {
    let (hello_v1, hello_v2, web) = (
        upstream("hello-v1").await,
        upstream("hello-v2").await,
        upstream("web").await,
    );
    let r = default_router().await;
    r.router.update(spec(vec![
        app(1, "hello", vec![set(1, None, &[&hello_v1])]),
        app(2, "web", vec![set(1, None, &[&web])]),
    ]));
    let mut client = Client::connect(r.addr).await;
    assert_eq!(client.get(HELLO, "/").await.2, "hello-v1");
    assert_eq!(client.get("web.acme.localhost:8000", "/").await.2, "web");
    // Case, port and a trailing dot do not matter.
    assert_eq!(
        client.get("HELLO.Acme.LOCALHOST.:8000", "/").await.2,
        "hello-v1"
    );

    // A new release takes over on the next request, on the same client connection.
    r.router.update(spec(vec![
        app(1, "hello", vec![set(2, None, &[&hello_v2])]),
        app(2, "web", vec![set(1, None, &[&web])]),
    ]));
    assert_eq!(client.get(HELLO, "/").await.2, "hello-v2");
    assert_eq!(client.get("web.acme.localhost", "/").await.2, "web");
}

#[tokio::test]
async fn an_unknown_host_gets_a_404_page_that_escapes_it() {
    let r = default_router().await;
    r.router.update(spec(vec![app(1, "hello", vec![])]));
    let mut client = Client::connect(r.addr).await;
    let (status, headers, page) = client.get("<i>x</i>.acme.localhost", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        page.contains("&lt;i&gt;x&lt;/i&gt;.acme.localhost"),
        "{page}"
    );
    assert!(!page.contains("<i>"), "{page}");
    assert!(
        page.contains("&lt;app&gt;.&lt;team&gt;.localhost"),
        "{page}"
    );
    for host in [
        "localhost:8000",
        "other.acme.localhost",
        "hello.acme.example.com",
    ] {
        assert_eq!(
            client.get(host, "/").await.0,
            StatusCode::NOT_FOUND,
            "{host}"
        );
    }
}

#[tokio::test]
async fn an_app_without_ready_instances_answers_503_with_retry_after() {
    let r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[])])]));
    let mut client = Client::connect(r.addr).await;
    let (status, headers, page) = client.get(HELLO, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert!(page.contains("hello"), "{page}");
}

#[tokio::test]
async fn the_upstream_sees_forwarded_headers_and_the_request_id_comes_back() {
    let up = upstream("hello").await;
    let r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&up])])]));
    let mut client = Client::connect(r.addr).await;

    let mut req = request(Method::GET, "hello.acme.localhost:8000", "/a?b=c", empty());
    req.headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    req.headers_mut()
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    req.headers_mut()
        .insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
    req.headers_mut()
        .insert("x-hop", HeaderValue::from_static("secret"));
    let res = client.send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = up.last_headers();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "hello.acme.localhost:8000");
    assert_eq!(seen["host"], "hello.acme.localhost:8000");
    assert!(
        seen.get("x-hop").is_none(),
        "a header named by Connection is hop-by-hop"
    );
    let generated = seen["x-request-id"].clone();
    assert!(!generated.is_empty());
    assert_eq!(res.headers()["x-request-id"], generated);

    // A client's own sane id is kept; an insane one replaced.
    let mut req = request(Method::GET, HELLO, "/", empty());
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("client-id-42"));
    let res = client.send(req).await;
    assert_eq!(up.last_headers()["x-request-id"], "client-id-42");
    assert_eq!(res.headers()["x-request-id"], "client-id-42");
    let mut req = request(Method::GET, HELLO, "/", empty());
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("has spaces <>"));
    let res = client.send(req).await;
    let replaced = up.last_headers()["x-request-id"].clone();
    assert_ne!(replaced, "has spaces <>");
    assert_ne!(replaced, generated);
    assert_eq!(res.headers()["x-request-id"], replaced);
}

#[tokio::test]
async fn request_and_response_bodies_are_streamed_not_buffered() {
    let up = upstream("hello").await;
    let r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&up])])]));

    // Upload: the client sends the body chunk by chunk, and sends the next only once the echo
    // of the previous came back through the router. A proxy that buffered the request (or the
    // response) would never get past the first chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    }));
    let mut client = Client::connect(r.addr).await;
    let req = request(Method::POST, HELLO, "/echo", body.boxed_unsync());
    let chunk = Bytes::from(vec![b'u'; 512 * 1024]);
    tx.send(chunk.clone()).await.unwrap();
    let mut echo = client.send(req).await.into_body();
    let mut received = 0usize;
    for i in 0..16 {
        let want = (i + 1) * chunk.len();
        while received < want {
            let frame = within("echoed chunk", echo.frame()).await.unwrap().unwrap();
            received += frame.into_data().map_or(0, |d| d.len());
        }
        if i < 15 {
            tx.send(chunk.clone()).await.unwrap();
        }
    }
    drop(tx);
    assert!(within("end of echo", echo.frame()).await.is_none());
    assert_eq!(received, 16 * chunk.len());

    // Download: the first chunk arrives while the upstream still holds the rest back.
    let mut client = Client::connect(r.addr).await;
    let mut body = client
        .send(request(Method::GET, HELLO, "/stream", empty()))
        .await
        .into_body();
    let first = within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    up.gate.notify_one();
    let rest = within("the rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest.len(), 64 * 256 * 1024);
}

#[tokio::test]
async fn sequential_requests_reuse_upstream_connections() {
    let up = upstream("hello").await;
    let r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&up])])]));
    let mut client = Client::connect(r.addr).await;
    for _ in 0..100 {
        assert_eq!(client.get(HELLO, "/").await.2, "hello");
    }
    assert!(up.accepted() <= 3, "{} upstream connections", up.accepted());
}

#[tokio::test]
async fn a_refused_endpoint_is_retried_on_the_live_one() {
    let live = upstream("live").await;
    let dead = refused_endpoint().await;
    let r = default_router().await;
    let mut hello = set(1, None, &[&live]);
    hello.endpoints.insert(0, dead);
    r.router.update(spec(vec![app(1, "hello", vec![hello])]));
    let mut client = Client::connect(r.addr).await;
    for i in 0..200 {
        let (status, _, body) = client.get(HELLO, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "live"),
            "request {i}"
        );
    }

    // With nowhere else to go, a refused connection is a 502.
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![SetSpec {
            endpoints: vec![refused_endpoint().await],
            ..set_with_no_endpoints()
        }],
    )]));
    assert_eq!(client.get(HELLO, "/").await.0, StatusCode::BAD_GATEWAY);
}

fn set_with_no_endpoints() -> SetSpec {
    set(1, None, &[])
}

#[tokio::test]
async fn an_upstream_closing_after_every_response_loses_no_request() {
    // The keep-alive race: a pooled connection that the app has closed. hyper hands the unsent
    // request back and the router resends it on a fresh connection.
    let (endpoint, accepted) = closing_upstream().await;
    let r = default_router().await;
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![SetSpec {
            endpoints: vec![endpoint],
            ..set_with_no_endpoints()
        }],
    )]));
    let mut client = Client::connect(r.addr).await;
    for i in 0..200 {
        let (status, _, body) = client.get(HELLO, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "closed"),
            "request {i}"
        );
    }
    assert!(accepted.load(Ordering::SeqCst) >= 200);
}

#[tokio::test]
async fn a_table_swap_lets_the_slow_request_finish_and_counts_it_until_then() {
    let (old, new) = (upstream("old").await, upstream("new").await);
    let r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&old])])]));
    assert!(r.router.routes_to(old.instance));

    let addr = r.addr;
    let slow = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.get(HELLO, "/slow").await
    });
    let router = r.router.clone();
    eventually("the slow request is in flight", || {
        router.in_flight(old.instance) == 1
    })
    .await;
    eventually("the slow request reached the upstream", || {
        !old.seen.lock().unwrap().is_empty()
    })
    .await;

    r.router
        .update(spec(vec![app(1, "hello", vec![set(2, None, &[&new])])]));
    assert!(
        !r.router.routes_to(old.instance),
        "removed from the table at once"
    );
    assert!(r.router.routes_to(new.instance));
    assert_eq!(
        r.router.in_flight(old.instance),
        1,
        "still counted after removal"
    );

    let mut client = Client::connect(r.addr).await;
    for _ in 0..5 {
        assert_eq!(client.get(HELLO, "/").await.2, "new");
    }
    assert_eq!(r.router.in_flight(old.instance), 1);

    old.gate.notify_one();
    let (status, _, body) = within("the slow request", slow).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "old"));
    let router = r.router.clone();
    eventually("the old instance drained", || {
        router.in_flight(old.instance) == 0
    })
    .await;
    assert_eq!(r.router.in_flight(new.instance), 0);
}

#[tokio::test]
async fn explicit_weights_split_traffic() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let r = default_router().await;
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![set(1, Some(80), &[&stable]), set(2, Some(20), &[&canary])],
    )]));
    let mut client = Client::connect(r.addr).await;
    let mut canary_hits = 0;
    for _ in 0..1_000 {
        if client.get(HELLO, "/").await.2 == "canary" {
            canary_hits += 1;
        }
    }
    assert!(
        (170..=230).contains(&canary_hits),
        "{canary_hits} of 1000 went to the canary"
    );
}

/// A websocket server that echoes every message.
async fn websocket_upstream() -> EndpointSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    EndpointSpec {
        instance: next_instance(),
        addr,
    }
}

#[tokio::test]
async fn a_websocket_is_spliced_through_and_counted_as_one_request() {
    let endpoint = websocket_upstream().await;
    let instance = endpoint.instance;
    let r = default_router().await;
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![SetSpec {
            endpoints: vec![endpoint],
            ..set_with_no_endpoints()
        }],
    )]));
    let stream = TcpStream::connect(r.addr).await.unwrap();
    let url = format!("ws://{HELLO}:{}/ws", r.addr.port());
    let (mut ws, res) = within(
        "websocket handshake",
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(res.headers().contains_key("x-request-id"));

    for text in ["hello", "世界"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = within("echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    let echo = within("binary echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(echo.into_data().len(), 100_000);
    assert_eq!(r.router.in_flight(instance), 1);

    ws.close(None).await.unwrap();
    drop(ws);
    let router = r.router.clone();
    eventually("the splice ended", || router.in_flight(instance) == 0).await;
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.stats.requests, 1);
    assert_eq!(routes.stats.status.informational, 1);
}

#[tokio::test]
async fn app_routes_shows_sets_weights_endpoints_and_counters() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let r = start_router(RouterConfig {
        public_port: 8000,
        ..RouterConfig::default()
    })
    .await;
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![
            set(1, None, &[&a, &b]),
            set(2, None, &[&c]),
            set(3, None, &[]),
        ],
    )]));
    assert!(r.router.app_routes(Uuid::from_u128(99)).is_none());
    let mut client = Client::connect(r.addr).await;
    for _ in 0..30 {
        assert_eq!(client.get(HELLO, "/").await.0, StatusCode::OK);
    }
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.host, HELLO);
    assert_eq!(routes.url, "http://hello.acme.localhost:8000/");
    let weights: Vec<(u32, u32)> = routes.sets.iter().map(|s| (s.release, s.weight)).collect();
    assert_eq!(weights, [(1, 67), (2, 33), (3, 0)]);
    assert_eq!(routes.sets[0].endpoints.len(), 2);
    assert_eq!(routes.sets[0].endpoints[0].instance, a.instance);
    assert_eq!(routes.sets[0].endpoints[0].address, a.addr.to_string());
    assert_eq!(routes.sets[0].endpoints[0].in_flight, 0);
    assert_eq!(routes.stats.requests, 30);
    assert_eq!(routes.stats.status.success, 30);
    assert_eq!(routes.sets[0].stats.requests, 20);
    assert_eq!(routes.sets[1].stats.requests, 10);
    assert_eq!(routes.sets[2].stats.requests, 0);
    assert!(routes.stats.latency.p50_ms.is_some());
    assert_eq!(routes.stats.latency.buckets.last().unwrap().count, 30);

    // Every instance gone: a 503, counted on the app only; the sets keep their counters.
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![set(1, None, &[]), set(2, None, &[]), set(3, None, &[])],
    )]));
    assert_eq!(
        client.get(HELLO, "/").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.stats.requests, 31);
    assert_eq!(routes.stats.status.server_error, 1);
    assert_eq!(routes.sets[0].stats.requests, 20);
    assert_eq!(routes.sets[0].stats.status.server_error, 0);
    let weights: Vec<u32> = routes.sets.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [0, 0, 0]);
}

#[tokio::test]
async fn no_response_headers_in_time_is_a_504() {
    let up = upstream("hello").await;
    let r = start_router(RouterConfig {
        response_header_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    })
    .await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&up])])]));
    let mut client = Client::connect(r.addr).await;
    assert_eq!(
        client.get(HELLO, "/slow").await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(r.router.in_flight(up.instance), 0);
    // The timed-out connection is not reused; the next request gets a fresh one.
    assert_eq!(client.get(HELLO, "/").await.2, "hello");
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.sets[0].stats.status.server_error, 1);
    assert_eq!(routes.sets[0].stats.status.success, 1);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_the_request_in_flight_finish() {
    let up = upstream("hello").await;
    let mut r = default_router().await;
    r.router
        .update(spec(vec![app(1, "hello", vec![set(1, None, &[&up])])]));
    let addr = r.addr;
    let slow = tokio::spawn(async move { Client::connect(addr).await.get(HELLO, "/slow").await });
    let router = r.router.clone();
    eventually("the slow request is in flight", || {
        router.in_flight(up.instance) == 1
    })
    .await;

    drop(r.shutdown.take());
    // The listener closes: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!r.served.is_finished(), "waits for the request in flight");
    up.gate.notify_one();
    let (status, _, body) = within("the slow request", slow).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    within("serve returns", &mut r.served)
        .await
        .unwrap()
        .unwrap();
}

// ---------- preview host (blue-green) ----------

#[tokio::test]
async fn the_preview_host_serves_the_preview_set_alone_while_the_main_host_follows_weights() {
    let (blue, green) = (upstream("blue").await, upstream("green").await);
    let r = default_router().await;
    r.router.update(spec(vec![with_preview(
        app(
            1,
            "hello",
            vec![set(1, Some(100), &[&blue]), set(2, Some(0), &[&green])],
        ),
        2,
    )]));
    let mut client = Client::connect(r.addr).await;
    for i in 0..50 {
        assert_eq!(client.get(HELLO, "/").await.2, "blue", "main {i}");
        let (status, headers, body) = client.get(PREVIEW, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "green"),
            "preview {i}"
        );
        assert!(set_cookies(&headers).is_empty());
    }
    // Case, port and a trailing dot do not matter here either.
    assert_eq!(
        client
            .get("PREVIEW.Hello.acme.LOCALHOST.:8000", "/")
            .await
            .2,
        "green"
    );
    // The upstream sees the host the client used.
    assert_eq!(
        green.last_headers()["x-forwarded-host"],
        "PREVIEW.Hello.acme.LOCALHOST.:8000"
    );

    // Counted on the preview set and the app like any other request.
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.url, "http://hello.acme.localhost:8000/");
    assert_eq!(
        routes.preview_url.as_deref(),
        Some("http://preview.hello.acme.localhost:8000/")
    );
    let sets: Vec<(u32, u32, bool, u64)> = routes
        .sets
        .iter()
        .map(|s| (s.release, s.weight, s.preview, s.stats.requests))
        .collect();
    assert_eq!(sets, [(1, 100, false, 50), (2, 0, true, 51)]);
    assert_eq!(routes.stats.requests, 101);

    // Promoted: green takes the main host, and without a preview set the preview host is an
    // unknown host.
    r.router.update(spec(vec![app(
        1,
        "hello",
        vec![set(1, Some(0), &[&blue]), set(2, Some(100), &[&green])],
    )]));
    assert_eq!(client.get(HELLO, "/").await.2, "green");
    assert_eq!(client.get(PREVIEW, "/").await.0, StatusCode::NOT_FOUND);
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.preview_url, None);
    assert!(routes.sets.iter().all(|s| !s.preview));
}

#[tokio::test]
async fn the_preview_host_ignores_stickiness_and_weights() {
    let (blue, green) = (upstream("blue").await, upstream("green").await);
    let r = default_router().await;
    r.router.update(spec(vec![with_preview(
        sticky(app(
            1,
            "hello",
            vec![set(1, Some(50), &[&blue]), set(2, Some(50), &[&green])],
        )),
        1,
    )]));
    let mut client = Client::connect(r.addr).await;
    for cookie in [None, Some("gantry_release=2"), Some("gantry_release=1")] {
        for _ in 0..10 {
            let (status, headers, body) = client.get_with_cookie(PREVIEW, "/", cookie).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "blue"),
                "{cookie:?}"
            );
            assert!(set_cookies(&headers).is_empty(), "{cookie:?}");
        }
    }
    // The main host of the same app is sticky.
    let (_, headers, body) = client.get(HELLO, "/").await;
    let version = if body == "blue" { 1 } else { 2 };
    assert_eq!(set_cookies(&headers), [assigned(version)]);
}

#[tokio::test]
async fn the_preview_host_is_404_without_a_preview_set_and_503_when_it_has_no_endpoint() {
    let (blue, green) = (upstream("blue").await, upstream("green").await);
    let r = default_router().await;
    let sets = || vec![set(1, Some(100), &[&blue]), set(2, Some(0), &[&green])];
    let mut client = Client::connect(r.addr).await;

    // No preview, or one naming a release that is no set of the app: an unknown host.
    for spec_app in [
        app(1, "hello", sets()),
        with_preview(app(1, "hello", sets()), 9),
    ] {
        r.router.update(spec(vec![spec_app]));
        let (status, _, page) = client.get(PREVIEW, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(page.contains("No app here"), "{page}");
        assert_eq!(client.get(HELLO, "/").await.2, "blue");
    }
    // Nothing is counted for a 404.
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.stats.requests, 2);

    // The preview set has no ready instance: like an app without one, while the main host serves.
    r.router.update(spec(vec![with_preview(
        app(
            1,
            "hello",
            vec![set(1, Some(100), &[&blue]), set(2, Some(0), &[])],
        ),
        2,
    )]));
    let (status, headers, page) = client.get(PREVIEW, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert!(page.contains("hello"), "{page}");
    assert_eq!(client.get(HELLO, "/").await.2, "blue");
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    assert_eq!(routes.stats.status.server_error, 1);

    // Other three-label hosts are still unknown.
    for host in [
        "x.hello.acme.localhost",
        "preview.preview.hello.acme.localhost",
        "preview.other.acme.localhost",
    ] {
        assert_eq!(
            client.get(host, "/").await.0,
            StatusCode::NOT_FOUND,
            "{host}"
        );
    }
}

#[tokio::test]
async fn a_refused_preview_endpoint_is_retried_in_the_preview_set_only() {
    let (blue, green) = (upstream("blue").await, upstream("green").await);
    let r = default_router().await;
    let mut preview = set(2, Some(0), &[&green]);
    preview.endpoints.insert(0, refused_endpoint().await);
    r.router.update(spec(vec![with_preview(
        app(1, "hello", vec![set(1, Some(100), &[&blue]), preview]),
        2,
    )]));
    let mut client = Client::connect(r.addr).await;
    for i in 0..50 {
        let (status, _, body) = client.get(PREVIEW, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "green"),
            "request {i}"
        );
    }

    // With no other endpoint in the preview set, a 502 rather than blue.
    let mut preview = set(2, Some(0), &[]);
    preview.endpoints.push(refused_endpoint().await);
    r.router.update(spec(vec![with_preview(
        app(1, "hello", vec![set(1, Some(100), &[&blue]), preview]),
        2,
    )]));
    assert_eq!(client.get(PREVIEW, "/").await.0, StatusCode::BAD_GATEWAY);
}

// ---------- sticky sets (canary) ----------

#[tokio::test]
async fn a_sticky_app_assigns_a_set_once_and_the_cookie_keeps_it() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let r = default_router().await;
    r.router.update(spec(vec![sticky(app(
        1,
        "hello",
        vec![set(1, Some(50), &[&v1]), set(2, Some(50), &[&v2])],
    ))]));
    let mut client = Client::connect(r.addr).await;

    let (status, headers, first) = client.get(HELLO, "/").await;
    assert_eq!(status, StatusCode::OK);
    let version: u32 = first.trim_start_matches('v').parse().unwrap();
    assert_eq!(set_cookies(&headers), [assigned(version)]);

    // The cookie as a browser sends it back, among others.
    let cookie = format!("theme=dark; gantry_release={version}; lang=en");
    for i in 0..200 {
        let (status, headers, body) = client.get_with_cookie(HELLO, "/", Some(&cookie)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, first.as_str()),
            "request {i}"
        );
        assert!(set_cookies(&headers).is_empty(), "set again on request {i}");
    }
    let routes = r.router.app_routes(Uuid::from_u128(1)).unwrap();
    let per_set: Vec<u64> = routes.sets.iter().map(|s| s.stats.requests).collect();
    let expected = if version == 1 { [201, 0] } else { [0, 201] };
    assert_eq!(per_set, expected);

    // The other set's cookie is just as good; the app's own cookies are kept beside the router's.
    let other = 3 - version;
    let (_, headers, body) = client
        .get_with_cookie(
            HELLO,
            "/set-cookie",
            Some(&format!("gantry_release={other}")),
        )
        .await;
    assert_eq!(body, format!("v{other}"));
    assert_eq!(set_cookies(&headers), ["app=1; Path=/"]);
    let (_, headers, _) = client.get(HELLO, "/set-cookie").await;
    let mut cookies = set_cookies(&headers);
    cookies.sort_unstable();
    assert_eq!(cookies.len(), 2);
    assert_eq!(cookies[0], "app=1; Path=/");
    assert!(cookies[1].starts_with("gantry_release="), "{cookies:?}");
}

#[tokio::test]
async fn a_cookie_naming_no_set_with_traffic_is_replaced() {
    let (v1, v2, v3) = (
        upstream("v1").await,
        upstream("v2").await,
        upstream("v3").await,
    );
    let r = default_router().await;
    // v3 has instances but no traffic.
    r.router.update(spec(vec![sticky(app(
        1,
        "hello",
        vec![
            set(1, Some(50), &[&v1]),
            set(2, Some(50), &[&v2]),
            set(3, Some(0), &[&v3]),
        ],
    ))]));
    let mut client = Client::connect(r.addr).await;
    for cookie in [
        "gantry_release=3",
        "gantry_release=7",
        "gantry_release=<b>1</b>",
        "gantry_release=+1",
        "gantry_release=99999999999",
    ] {
        let (status, headers, body) = client.get_with_cookie(HELLO, "/", Some(cookie)).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(body, "v3", "{cookie}");
        let version: u32 = body.trim_start_matches('v').parse().unwrap();
        // Only the parsed number ever goes back.
        assert_eq!(set_cookies(&headers), [assigned(version)], "{cookie}");
    }
}

#[tokio::test]
async fn cookieless_requests_to_a_sticky_app_follow_the_weights_exactly() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let r = default_router().await;
    r.router.update(spec(vec![sticky(app(
        1,
        "hello",
        vec![set(1, Some(90), &[&stable]), set(2, Some(10), &[&canary])],
    ))]));
    let mut new_clients = Client::connect(r.addr).await;
    let mut returning = Client::connect(r.addr).await;
    let mut canary_hits = 0;
    for i in 0..1_000 {
        let (_, headers, body) = new_clients.get(HELLO, "/").await;
        let version = match body.as_str() {
            "stable" => 1,
            "canary" => 2,
            other => panic!("{other}"),
        };
        canary_hits += u32::from(version == 2);
        assert_eq!(set_cookies(&headers), [assigned(version)], "request {i}");
        // A returning canary client in between does not shift the split of the new ones.
        if i % 4 == 0 {
            let (_, _, body) = returning
                .get_with_cookie(HELLO, "/", Some("gantry_release=2"))
                .await;
            assert_eq!(body, "canary");
        }
    }
    assert_eq!(canary_hits, 100);
}

#[tokio::test]
async fn a_sticky_request_retried_in_another_set_is_assigned_that_set() {
    let live = upstream("v2").await;
    let r = default_router().await;
    let mut dead = set(1, Some(50), &[]);
    dead.endpoints.push(refused_endpoint().await);
    r.router.update(spec(vec![sticky(app(
        1,
        "hello",
        vec![dead, set(2, Some(50), &[&live])],
    ))]));
    let mut client = Client::connect(r.addr).await;
    for i in 0..20 {
        let (status, headers, body) = client
            .get_with_cookie(HELLO, "/", Some("gantry_release=1"))
            .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "v2"),
            "request {i}"
        );
        assert_eq!(set_cookies(&headers), [assigned(2)], "request {i}");
    }
}

#[tokio::test]
async fn without_stickiness_no_cookie_is_read_or_set() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let r = default_router().await;
    let sets = || vec![set(1, Some(50), &[&v1]), set(2, Some(50), &[&v2])];
    let mut client = Client::connect(r.addr).await;
    // Not asked for; or asked for with only one set receiving traffic.
    for spec_app in [
        app(1, "hello", sets()),
        sticky(app(
            1,
            "hello",
            vec![set(1, Some(100), &[&v1]), set(2, Some(0), &[&v2])],
        )),
    ] {
        let stuck = spec_app.sticky;
        r.router.update(spec(vec![spec_app]));
        let mut per_body = std::collections::HashMap::<String, u32>::new();
        for i in 0..200 {
            let cookie = (i % 2 == 0).then_some("gantry_release=2");
            let (status, headers, body) = client.get_with_cookie(HELLO, "/", cookie).await;
            assert_eq!(status, StatusCode::OK);
            assert!(set_cookies(&headers).is_empty(), "request {i}");
            *per_body.entry(body).or_default() += 1;
        }
        if stuck {
            assert_eq!(per_body.get("v1"), Some(&200));
        } else {
            // The cookie is ignored: the weights alone decide.
            assert_eq!(per_body.get("v1"), Some(&100));
            assert_eq!(per_body.get("v2"), Some(&100));
        }
    }
}
