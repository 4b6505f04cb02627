//! Test origins, a front door harness and a small HTTP client, all on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::{
    Config, FrontdoorError, Listeners, OriginConfig, OriginGroupConfig, OriginsReport,
    PassiveHealthConfig, ProbeConfig, RouteConfig,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) const TOKEN: &str = "test-token";

/// How a test origin behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answers 200 with its name.
    Normal,
    /// Accepts connections and requests, never answers (a SIGSTOPped process).
    Frozen,
    /// Answers with this status.
    Status(u16),
    /// Answers requests (not probes) normally after this many milliseconds.
    Slow(u64),
}

/// A request an origin saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
}

#[derive(Debug)]
pub(crate) struct OriginState {
    pub(crate) requests: AtomicU64,
    pub(crate) probes: AtomicU64,
    pub(crate) connections: AtomicU64,
    /// A probe arrived on a connection that had served a request before.
    pub(crate) probe_reused_connection: AtomicBool,
    pub(crate) probe_status: AtomicU16,
    pub(crate) probe_delay_ms: AtomicU64,
    pub(crate) mode: Mutex<Mode>,
    pub(crate) last: Mutex<Option<Seen>>,
    /// `/stream` sends its second chunk once this is notified.
    pub(crate) release: tokio::sync::Notify,
}

/// A small HTTP/1.1 origin. Paths: `/health` (probes), `/echo` (JSON of the request),
/// `/upload` (counts body bytes), `/slow?ms=N`, `/ws` (101 + echo), anything else: name.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<OriginState>,
    stop: CancellationToken,
}

impl Origin {
    pub(crate) async fn start(name: &str) -> Origin {
        Origin::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub(crate) async fn start_on(name: &str, addr: SocketAddr) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(OriginState {
            requests: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            probe_reused_connection: AtomicBool::new(false),
            probe_status: AtomicU16::new(200),
            probe_delay_ms: AtomicU64::new(0),
            mode: Mutex::new(Mode::Normal),
            last: Mutex::new(None),
            release: tokio::sync::Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve_origin(
            listener,
            name.to_string(),
            Arc::clone(&state),
            stop.clone(),
        ));
        Origin { addr, state, stop }
    }

    /// Starts again on the address of a killed origin (waits for the old listener to
    /// close, under a deadline).
    pub(crate) async fn restart_on(name: &str, addr: SocketAddr) -> Origin {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    drop(l);
                    return Origin::start_on(name, addr).await;
                }
                Err(e) => assert!(Instant::now() < deadline, "rebind {addr}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Like a crashed process: the listener closes and every connection drops.
    pub(crate) fn kill(&self) {
        self.stop.cancel();
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub(crate) fn last_seen(&self) -> Seen {
        self.state
            .last
            .lock()
            .unwrap()
            .clone()
            .expect("no request seen")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_origin(
    listener: TcpListener,
    name: String,
    state: Arc<OriginState>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            () = stop.cancelled() => return,
        };
        state.connections.fetch_add(1, Ordering::Relaxed);
        let served = Arc::new(AtomicU64::new(0));
        let (name, state, stop) = (name.clone(), Arc::clone(&state), stop.clone());
        tokio::spawn(async move {
            let svc = {
                let stop = stop.clone();
                service_fn(move |req| {
                    let (name, state, served, stop) = (
                        name.clone(),
                        Arc::clone(&state),
                        Arc::clone(&served),
                        stop.clone(),
                    );
                    async move { Ok::<_, Infallible>(answer(req, &name, &state, &served, stop).await) }
                })
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn text(status: u16, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(s.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

async fn answer(
    mut req: Request<Incoming>,
    name: &str,
    state: &Arc<OriginState>,
    served: &AtomicU64,
    stop: CancellationToken,
) -> Response<Body> {
    let before = served.fetch_add(1, Ordering::Relaxed);
    let mode = *state.mode.lock().unwrap();
    if mode == Mode::Frozen {
        // Never answers; ends only when the origin is killed.
        stop.cancelled().await;
        return text(500, "killed");
    }
    if req.uri().path() == "/health" {
        state.probes.fetch_add(1, Ordering::Relaxed);
        if before > 0 {
            state.probe_reused_connection.store(true, Ordering::Relaxed);
        }
        let delay = state.probe_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        return text(state.probe_status.load(Ordering::Relaxed), "");
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    *state.last.lock().unwrap() = Some(Seen {
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    if let Mode::Status(s) = mode {
        return text(s, name.to_string());
    }
    if let Mode::Slow(ms) = mode {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match req.uri().path() {
        "/upload" => {
            let mut n = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                    Err(_) => return text(400, "body error"),
                }
            }
            text(200, n.to_string())
        }
        "/first-chunk" => {
            // Answers as soon as the first chunk arrives (the client holds the rest).
            let mut body = req.into_body();
            let n = match body.frame().await {
                Some(Ok(f)) => f.data_ref().map(|d| d.len()).unwrap_or(0),
                _ => 0,
            };
            tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
            text(200, n.to_string())
        }
        "/stream" => {
            let (tx, body) = channel_body();
            let state = Arc::clone(state);
            let _ = tx.try_send(Bytes::from_static(b"first;"));
            let release = async move {
                state.release.notified().await;
                let _ = tx.send(Bytes::from_static(b"second")).await;
            };
            tokio::spawn(release);
            Response::new(body.map_err(|never| match never {}).boxed())
        }
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(200, name.to_string())
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = text(101, "");
            r.headers_mut()
                .insert(http::header::UPGRADE, "echo".parse().unwrap());
            r.headers_mut()
                .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
            r
        }
        _ => {
            let mut r = text(200, name.to_string());
            r.headers_mut().insert("x-origin", name.parse().unwrap());
            r
        }
    }
}

/// An address where nothing listens (connections are refused).
pub(crate) async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// An origin that reads a request and closes the connection without answering.
pub(crate) async fn closing_origin() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        c.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                drop(s);
            });
        }
    });
    (addr, count)
}

/// An origin that answers the first request of each connection (keep-alive) and closes
/// the connection when a second request arrives on it: the keep-alive race, made certain.
pub(crate) async fn one_answer_per_connection_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce";
                if s.write_all(answer).await.is_err() {
                    return;
                }
                // Wait for the next request, then drop the connection unanswered.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

/// A black hole: a listener whose accept queue is full, so new connects hang (the SYN is
/// dropped). Keep the returned value alive while using the address.
pub(crate) async fn black_hole() -> (SocketAddr, (TcpListener, Vec<TcpStream>)) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // Bounded: the queue holds one or two connections.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => return (addr, (listener, held)),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

// === config ===

/// A group "api" over `origins` with fast probes on `/health`; one catch-all route.
pub(crate) fn config(origins: &[(&str, SocketAddr)]) -> Config {
    let group = OriginGroupConfig {
        name: "api".into(),
        origin_response_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(500),
        slow_start: Duration::ZERO,
        probe: ProbeConfig {
            path: "/health".into(),
            interval: Duration::from_millis(50),
            timeout: Some(Duration::from_millis(500)),
            // A wide latency band: on a busy machine probe jitter of a millisecond would
            // otherwise decide splits that tests attribute to weights or slow start.
            // Tests of the band itself set it.
            additional_latency_ms: 1000,
            ..ProbeConfig::default()
        },
        passive: PassiveHealthConfig::default(),
        origins: origins
            .iter()
            .map(|(n, a)| OriginConfig::new(*n, *a))
            .collect(),
        ..OriginGroupConfig::default()
    };
    Config {
        admin: Some(geoha_frontdoor::AdminConfig {
            address: None,
            token: TOKEN.into(),
        }),
        routes: vec![RouteConfig {
            origin_group: "api".into(),
            ..RouteConfig::default()
        }],
        origin_groups: vec![group],
        drain_deadline: Duration::from_secs(5),
        // More than one, so that every test crosses workers; fixed, so that a machine
        // with many CPUs does not start dozens of threads per test.
        workers: 2,
        ..Config::default()
    }
}

// === front door harness ===

#[derive(Debug)]
pub(crate) struct Fd {
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) reloads: watch::Sender<Arc<Config>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), FrontdoorError>>>,
}

impl Fd {
    pub(crate) async fn start(cfg: Config) -> Fd {
        let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (traffic.local_addr().unwrap(), admin.local_addr().unwrap());
        let cfg = Arc::new(cfg);
        let (reloads, rx) = watch::channel(Arc::clone(&cfg));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(geoha_frontdoor::run(
            cfg,
            Listeners {
                traffic: vec![traffic],
                admin: Some(admin),
            },
            rx,
            async move {
                let _ = stopped.await;
            },
        ));
        Fd {
            addr,
            admin: admin_addr,
            reloads,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Fires shutdown and returns the run task (to await the drain).
    pub(crate) fn shutdown(&mut self) -> JoinHandle<Result<(), FrontdoorError>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("already shut down")
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        request(self.addr, "GET", path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub(crate) async fn origins(&self) -> OriginsReport {
        let a = request(
            self.admin,
            "GET",
            "/admin/origins",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(a.status, 200, "{}", a.text());
        serde_json::from_slice(&a.body).unwrap()
    }

    pub(crate) async fn origin(&self, name: &str) -> geoha_frontdoor::OriginReport {
        self.origins()
            .await
            .groups
            .into_iter()
            .flat_map(|g| g.origins)
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no origin {name}"))
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let m = request(self.admin, "GET", "/metrics", &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(m.status, 200, "{}", m.text());
        m.text()
    }

    pub(crate) async fn admin_post(&self, path: &str, body: &str) -> Answer {
        request(
            self.admin,
            "POST",
            path,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
    }

    /// Waits (under a deadline) until the admin API shows `pred` for origin `name`.
    pub(crate) async fn wait_origin(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&geoha_frontdoor::OriginReport) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = self.origin(name).await;
            if pred(&o) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {what}: {o:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

// === client ===

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection, bounded by 10 s.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Answer, String> {
    let work = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test.example");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer within 10s".to_string())?
}

/// Steady load: `workers` keep-alive connections sending GET `/` back to back until
/// `stop`; returns (ok, failed, answers by origin).
pub(crate) async fn load(
    addr: SocketAddr,
    workers: usize,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (u64, Vec<String>, BTreeMap<String, u64>) {
    let done = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut failed = Vec::new();
            let mut by = BTreeMap::new();
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
            // Bounded: stops at `done` or after 100k requests.
            for _ in 0..100_000 {
                if done.is_cancelled() {
                    break;
                }
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    let Ok(stream) = TcpStream::connect(addr).await else {
                        failed.push("connect to front door".into());
                        continue;
                    };
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                if s.ready().await.is_err() {
                    sender = None;
                    continue;
                }
                let req = Request::get("/")
                    .header("host", "test.example")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let res = tokio::time::timeout(Duration::from_secs(10), async {
                    let resp = s.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                })
                .await;
                match res {
                    Ok(Ok((status, body))) if status == 200 => {
                        ok += 1;
                        *by.entry(String::from_utf8_lossy(&body).into_owned())
                            .or_insert(0u64) += 1;
                    }
                    Ok(Ok((status, body))) => {
                        failed.push(format!("{status}: {}", String::from_utf8_lossy(&body)))
                    }
                    Ok(Err(e)) => {
                        failed.push(format!("error: {e}"));
                        sender = None;
                    }
                    Err(_) => {
                        failed.push("timeout".into());
                        sender = None;
                    }
                }
            }
            (ok, failed, by)
        }));
    }
    stop.await;
    done.cancel();
    let mut total = (0, Vec::new(), BTreeMap::new());
    for t in tasks {
        let (ok, failed, by) = t.await.unwrap();
        total.0 += ok;
        total.1.extend(failed);
        for (k, v) in by {
            *total.2.entry(k).or_insert(0) += v;
        }
    }
    total
}

/// Sends `n` GETs one after another; returns answers per body (origin name) and failures.
pub(crate) async fn spread(fd: &Fd, n: usize) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for _ in 0..n {
        let a = fd.get("/").await;
        let key = if a.status == 200 {
            a.text()
        } else {
            format!("status {}", a.status)
        };
        *by.entry(key).or_insert(0) += 1;
    }
    by
}

/// A body fed by a channel (chunks arrive as they are sent).
#[derive(Debug)]
pub(crate) struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

pub(crate) fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}
