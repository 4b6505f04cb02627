//! Test harness: a replica per temp dir on an ephemeral port, a small HTTP client,
//! push helpers, a link proxy that models partitions, and a bounded wait.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geoha_registry::{Config, Peer};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A running replica.
pub(crate) struct Replica {
    pub(crate) base: String,
    pub(crate) dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), geoha_registry::RegistryError>>>,
}

impl Replica {
    /// A replica with default config in a fresh temp dir.
    pub(crate) async fn start(id: &str) -> Replica {
        Replica::start_with(id, |_| {}).await
    }

    pub(crate) async fn start_with(id: &str, edit: impl FnOnce(&mut Config)) -> Replica {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut cfg = Config::new(id, dir.path().join("data"));
        cfg.replication.retry_min = Duration::from_millis(20);
        cfg.replication.retry_max = Duration::from_millis(200);
        cfg.replication.peer_timeout = Duration::from_secs(2);
        cfg.limits.drain_deadline = Duration::from_secs(2);
        edit(&mut cfg);
        Replica::spawn(cfg, listener, addr, dir)
    }

    /// Starts again on the same storage with the same config edits (a restart).
    pub(crate) async fn restart_with(self, id: &str, edit: impl FnOnce(&mut Config)) -> Replica {
        let dir = Arc::clone(&self.dir);
        self.stop().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut cfg = Config::new(id, dir.path().join("data"));
        edit(&mut cfg);
        Replica::spawn(cfg, listener, addr, dir)
    }

    /// A replica on a listener the caller bound (so peers can know its address first).
    pub(crate) fn spawn(
        cfg: Config,
        listener: TcpListener,
        addr: SocketAddr,
        dir: Arc<tempfile::TempDir>,
    ) -> Replica {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(geoha_registry::run(Arc::new(cfg), listener, async move {
            let _ = stopped.await;
        }));
        Replica {
            base: format!("http://{addr}"),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("stops within 10s");
            r.expect("no panic").expect("run returns Ok");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts `ids.len()` replicas that all name each other as peers, each through its
/// own [`LinkProxy`] so a test can cut any directed link.
pub(crate) async fn mesh(
    ids: &[&str],
    edit: impl Fn(&mut Config),
) -> (Vec<Replica>, Vec<Vec<Option<LinkProxy>>>) {
    let mut listeners = Vec::new();
    for _ in ids {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = l.local_addr().expect("addr");
        listeners.push((l, a));
    }
    // proxies[i][j]: what replica i uses to reach replica j.
    let mut proxies: Vec<Vec<Option<LinkProxy>>> = Vec::new();
    for i in 0..ids.len() {
        let mut row = Vec::new();
        for (j, (_, addr)) in listeners.iter().enumerate() {
            row.push(if i == j {
                None
            } else {
                Some(LinkProxy::start(*addr).await)
            });
        }
        proxies.push(row);
    }
    let mut replicas = Vec::new();
    for (i, (listener, addr)) in listeners.into_iter().enumerate() {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut cfg = Config::new(ids[i], dir.path().join("data"));
        cfg.replication.retry_min = Duration::from_millis(20);
        cfg.replication.retry_max = Duration::from_millis(200);
        cfg.replication.peer_timeout = Duration::from_secs(2);
        cfg.limits.drain_deadline = Duration::from_secs(2);
        for (j, id) in ids.iter().enumerate() {
            if let Some(p) = &proxies[i][j] {
                cfg.peers.push(Peer {
                    id: (*id).to_owned(),
                    url: format!("http://{}", p.addr).try_into().expect("url"),
                });
            }
        }
        edit(&mut cfg);
        replicas.push(Replica::spawn(cfg, listener, addr, dir));
    }
    (replicas, proxies)
}

/// Cuts every link between the two groups (both directions).
pub(crate) fn partition(proxies: &[Vec<Option<LinkProxy>>], a: &[usize], b: &[usize], cut: bool) {
    for &i in a {
        for &j in b {
            for (x, y) in [(i, j), (j, i)] {
                if let Some(p) = &proxies[x][y] {
                    p.set_cut(cut);
                }
            }
        }
    }
}

// === LinkProxy ===

/// A TCP proxy to one address that can be cut (refuses and aborts connections) and
/// healed: a partition between two replicas without touching the registry.
pub(crate) struct LinkProxy {
    pub(crate) addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LinkProxy {
    pub(crate) async fn start(target: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = cut_rx.clone();
                if *rx.borrow() {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    // As the real link would: no Nagle delay added by the proxy itself.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        LinkProxy { addr, cut, task }
    }

    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === HTTP ===

/// An answer with its body read.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The first error code of an OCI error body.
    pub(crate) fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends a request; `url` may be a path (then `base` is prefixed).
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body.into())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer in 20s"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub(crate) async fn get(url: &str) -> Resp {
    send(Method::GET, url, &[], Bytes::new()).await
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes a blob with POST + PUT; returns its digest.
pub(crate) async fn push_blob(base: &str, repo: &str, bytes: &[u8]) -> String {
    push_blob_as(base, repo, bytes, &[]).await
}

pub(crate) async fn push_blob_as(
    base: &str,
    repo: &str,
    bytes: &[u8],
    auth: &[(&str, &str)],
) -> String {
    let digest = sha256(bytes);
    let r = send(
        Method::POST,
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        auth,
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let loc = r.header("location").to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = send(
        Method::PUT,
        &format!("{base}{loc}{sep}digest={digest}"),
        auth,
        bytes.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    digest
}

/// A manifest for a config blob and layer blobs (already pushed).
pub(crate) fn image_manifest(
    config: (&str, usize),
    layers: &[(&str, usize)],
    subject: Option<(&str, usize)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
        })).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s});
    }
    // Pretty-printed on purpose: the registry must keep bytes verbatim, not re-serialize.
    serde_json::to_vec_pretty(&m).expect("json")
}

/// Pushes a config, one layer and a manifest under `reference`; returns the manifest
/// digest and bytes.
pub(crate) async fn push_image(
    base: &str,
    repo: &str,
    reference: &str,
    seed: &str,
) -> (String, Vec<u8>) {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}");
    let c = push_blob(base, repo, config.as_bytes()).await;
    let l = push_blob(base, repo, layer.as_bytes()).await;
    let m = image_manifest((&c, config.len()), &[(&l, layer.len())], None);
    let r = send(
        Method::PUT,
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        &[("content-type", OCI_MANIFEST)],
        m.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    (sha256(&m), m)
}

/// Polls `probe` every 20 ms until it returns `Ok`, for at most `within`; panics with
/// the last value it saw.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match probe().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {within:?}; last: {last}");
}
