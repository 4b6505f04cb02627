//! kill -9 during pushes: every acknowledged blob, manifest and tag survives, and no
//! partial blob is ever visible. The server runs in a child process: this test binary
//! re-executes itself with `GEOHA_REGISTRY_CRASH_CHILD` set, which turns
//! [`crash_child`] into a server instead of a no-op.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncBufReadExt as _;

use crate::harness::{image_manifest, sha256, OCI_MANIFEST};

const CHILD_ENV: &str = "GEOHA_REGISTRY_CRASH_CHILD";
const ROUNDS: usize = 3;
const PUSHERS: usize = 4;

/// The server half: a no-op unless started by [`kill_9_loses_nothing_acknowledged`].
#[test]
fn crash_child() {
    let Ok(storage) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ADDR={}", listener.local_addr().unwrap());
        let cfg = geoha_registry::Config::new("crash", storage);
        // Runs until killed.
        geoha_registry::run(Arc::new(cfg), listener, std::future::pending())
            .await
            .unwrap();
    });
}

struct Child {
    proc: tokio::process::Child,
    base: String,
}

async fn spawn_child(storage: &Path) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut proc = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, storage)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints "test crash::crash_child ... " before the test's own output.
            if let Some(i) = line.find("ADDR=") {
                return line[i + 5..].trim().to_owned();
            }
        }
        panic!("child exited without an address");
    })
    .await
    .expect("child listening within 30s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Child {
        proc,
        base: format!("http://{addr}"),
    }
}

/// What the server acknowledged.
#[derive(Default)]
struct Acked {
    blobs: Vec<(String, String)>,
    manifests: Vec<(String, String)>,
    /// tag -> every digest pushed to it, in order, and how many of those were acked.
    tags: HashMap<String, (Vec<String>, usize)>,
}

async fn try_send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> Option<(StatusCode, String)> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    let req = b.body(Full::new(Bytes::from(body))).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status();
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    resp.into_body().collect().await.ok()?;
    Some((status, loc))
}

/// Pushes images until the server stops answering; records what was acknowledged.
async fn pusher(base: String, who: usize, round: usize, acked: Arc<Mutex<Acked>>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let repo = format!("crash/p{who}");
    for i in 0..10_000usize {
        let size = 1024 + (i * 7919 + who * 104_729) % (1 << 20);
        let layer: Vec<u8> = (0..size)
            .map(|j| ((j * 31 + i + who + round) % 251) as u8)
            .collect();
        let config = format!("{{\"who\":{who},\"i\":{i},\"round\":{round}}}").into_bytes();
        let mut ok = true;
        for data in [&config, &layer] {
            let d = sha256(data);
            let Some((StatusCode::ACCEPTED, loc)) = try_send(
                &client,
                Method::POST,
                &format!("{base}/v2/{repo}/blobs/uploads/"),
                None,
                Vec::new(),
            )
            .await
            else {
                return;
            };
            match try_send(
                &client,
                Method::PUT,
                &format!("{base}{loc}?digest={d}"),
                None,
                data.to_vec(),
            )
            .await
            {
                Some((StatusCode::CREATED, _)) => {
                    acked.lock().unwrap().blobs.push((repo.clone(), d))
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            return;
        }
        let m = image_manifest(
            (&sha256(&config), config.len()),
            &[(&sha256(&layer), layer.len())],
            None,
        );
        let d = sha256(&m);
        let tag = format!("t{}", i % 3);
        acked
            .lock()
            .unwrap()
            .tags
            .entry(format!("{repo}:{tag}"))
            .or_default()
            .0
            .push(d.clone());
        match try_send(
            &client,
            Method::PUT,
            &format!("{base}/v2/{repo}/manifests/{tag}"),
            Some(OCI_MANIFEST),
            m,
        )
        .await
        {
            Some((StatusCode::CREATED, _)) => {
                let mut a = acked.lock().unwrap();
                a.manifests.push((repo.clone(), d));
                let e = a.tags.get_mut(&format!("{repo}:{tag}")).unwrap();
                e.1 = e.0.len();
            }
            _ => return,
        }
    }
}

async fn verify(base: &str, acked: &Acked) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let fetch = |url: String| {
        let client = client.clone();
        async move {
            let req = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status();
            let digest = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, digest, body)
        }
    };
    for (repo, d) in &acked.blobs {
        let (status, _, body) = fetch(format!("{base}/v2/{repo}/blobs/{d}")).await;
        assert_eq!(status, StatusCode::OK, "acked blob {repo}@{d} lost");
        assert_eq!(sha256(&body), *d, "acked blob {repo}@{d} corrupt");
    }
    for (repo, d) in &acked.manifests {
        let (status, _, body) = fetch(format!("{base}/v2/{repo}/manifests/{d}")).await;
        assert_eq!(status, StatusCode::OK, "acked manifest {repo}@{d} lost");
        assert_eq!(sha256(&body), *d);
    }
    for (key, (pushed, acked_n)) in &acked.tags {
        if *acked_n == 0 {
            continue;
        }
        let (repo, tag) = key.split_once(':').unwrap();
        let (status, digest, _) = fetch(format!("{base}/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(status, StatusCode::OK, "acked tag {key} lost");
        // The last acked push, or a later one that was in flight at the kill.
        assert!(
            pushed[acked_n - 1..].contains(&digest),
            "tag {key} went back to {digest}"
        );
    }
}

/// Every file under blobs/ holds exactly the bytes its name promises.
fn no_partial_blobs(storage: &Path) -> usize {
    let mut n = 0;
    let blobs = storage.join("blobs").join("sha256");
    for prefix in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let bytes = std::fs::read(f.path()).unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            assert_eq!(
                sha256(&bytes),
                format!("sha256:{name}"),
                "partial blob visible: {}",
                f.path().display()
            );
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..ROUNDS {
        let mut child = spawn_child(&storage).await;
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|who| tokio::spawn(pusher(child.base.clone(), who, round, Arc::clone(&acked))))
            .collect();
        // Let pushes get going (a few acks, so the test never passes vacuously), then
        // SIGKILL mid-stream after a delay that differs per round.
        let before = acked.lock().unwrap().blobs.len();
        crate::harness::wait_until("pushes acknowledged", Duration::from_secs(60), || {
            let n = acked.lock().unwrap().blobs.len();
            async move {
                if n >= before + 8 {
                    Ok(())
                } else {
                    Err(format!("{} acks", n - before))
                }
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50 + 150 * round as u64)).await;
        child.proc.start_kill().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.proc.wait())
            .await
            .expect("child dies");
        for p in pushers {
            tokio::time::timeout(Duration::from_secs(15), p)
                .await
                .expect("pusher ends")
                .unwrap();
        }
        let child = spawn_child(&storage).await;
        {
            let a = std::mem::take(&mut *acked.lock().unwrap());
            assert!(
                !a.blobs.is_empty(),
                "round {round}: nothing was acknowledged before the kill"
            );
            verify(&child.base, &a).await;
            *acked.lock().unwrap() = a;
        }
        assert!(no_partial_blobs(&storage) > 0);
        drop(child);
    }
}
