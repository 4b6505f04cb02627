//! What survives a restart, resumable uploads, and garbage collection.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn acknowledged_pushes_survive_a_restart_and_uploads_resume() {
    let r = Replica::start("a").await;
    let (d, bytes) = push_image(&r.base, "keep", "v1", "k").await;
    let start = send(
        Method::POST,
        &format!("{}/v2/keep/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let loc = start.header("location").to_owned();
    let p = send(
        Method::PATCH,
        &format!("{}{loc}", r.base),
        &[("content-range", "0-2")],
        &b"abc"[..],
    )
    .await;
    assert_eq!(p.status, StatusCode::ACCEPTED);
    let r = r.restart_with("a", |_| {}).await;
    let got = get(&format!("{}/v2/keep/manifests/v1", r.base)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, Bytes::from(bytes));
    assert_eq!(got.header("docker-content-digest"), d);
    // The upload goes on where it stopped.
    let status = get(&format!("{}{loc}", r.base)).await;
    assert_eq!(status.header("range"), "0-2");
    let digest = sha256(b"abcdef");
    let done = send(
        Method::PUT,
        &format!("{}{loc}?digest={digest}", r.base),
        &[("content-range", "3-5")],
        &b"def"[..],
    )
    .await;
    assert_eq!(done.status, StatusCode::CREATED, "{done:?}");
    // Nothing half-written is left in tmp/.
    assert_eq!(std::fs::read_dir(r.data().join("tmp")).unwrap().count(), 0);
    r.stop().await;
}

#[tokio::test]
async fn link_and_tag_names_lost_in_a_crash_come_back_from_the_change_log() {
    // Link and tag files are renamed into place without a directory fsync: the change
    // log, fsynced before the 201, vouches for them. Deleting them models a power loss
    // that dropped those names; the restart's replay must bring them back.
    let r = Replica::start("a").await;
    let (d, bytes) = push_image(&r.base, "lost/names", "v1", "n").await;
    let dir = std::sync::Arc::clone(&r.dir);
    r.stop().await;
    let repo = dir.path().join("data/repos/lost/names");
    for sub in ["_layers", "_manifests", "_tags"] {
        std::fs::remove_dir_all(repo.join(sub)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = geoha_registry::Config::new("a", dir.path().join("data"));
    let r = Replica::spawn(cfg, listener, addr, dir);
    let got = get(&format!("{}/v2/lost/names/manifests/v1", r.base)).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.body, Bytes::from(bytes));
    assert_eq!(got.header("docker-content-digest"), d);
    r.stop().await;
}

#[tokio::test]
async fn a_referrer_index_lost_in_a_crash_comes_back_from_the_change_log() {
    // A crash after a manifest's link is written and before its referrer index is: the
    // replay finds the link unchanged, and must still index the referrer.
    let r = Replica::start("a").await;
    let (subject, sbytes) = push_image(&r.base, "refs", "v1", "s").await;
    let config = push_blob(&r.base, "refs", b"{}").await;
    let m = image_manifest((&config, 2), &[], Some((&subject, sbytes.len())));
    let d = sha256(&m);
    let put = send(
        Method::PUT,
        &format!("{}/v2/refs/manifests/{d}", r.base),
        &[("content-type", OCI_MANIFEST)],
        m,
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
    assert_eq!(referrers_of(&r.base, "refs", &subject).await, 1);
    let dir = std::sync::Arc::clone(&r.dir);
    r.stop().await;
    std::fs::remove_dir_all(dir.path().join("data/repos/refs/_referrers")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = geoha_registry::Config::new("a", dir.path().join("data"));
    let r = Replica::spawn(cfg, listener, addr, dir);
    assert_eq!(
        referrers_of(&r.base, "refs", &subject).await,
        1,
        "the referrer came back"
    );
    r.stop().await;
}

#[tokio::test]
async fn gc_removes_only_unreferenced_blobs_past_the_grace_period() {
    let r = Replica::start("a").await;
    let (m, _) = push_image(&r.base, "g", "v1", "kept").await;
    let orphan = push_blob(&r.base, "g", b"orphan").await;
    send(
        Method::DELETE,
        &format!("{}/v2/g/blobs/{orphan}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let data = r.data();
    let _keep = std::sync::Arc::clone(&r.dir);
    r.stop().await;
    // Within the grace period nothing goes.
    let report = geoha_registry::gc(&data, Duration::from_secs(3600)).unwrap();
    assert_eq!(report.blobs_removed, 0);
    assert_eq!(report.blobs_in_grace, 1);
    let plan = geoha_registry::gc_plan(&data, Duration::ZERO).unwrap();
    assert_eq!(plan.blobs_removed, 1);
    let report = geoha_registry::gc(&data, Duration::ZERO).unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.blobs_referenced, 3, "{report:?}");
    let hex = orphan.trim_start_matches("sha256:");
    assert!(!data.join("blobs/sha256").join(&hex[..2]).join(hex).exists());
    let mhex = m.trim_start_matches("sha256:");
    assert!(data
        .join("blobs/sha256")
        .join(&mhex[..2])
        .join(mhex)
        .exists());
    assert!(geoha_registry::gc(&data.join("missing"), Duration::ZERO).is_err());
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_upload_finish_and_refuses_new_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let r = Replica::start("a").await;
    let start = send(
        Method::POST,
        &format!("{}/v2/s/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let loc = start.header("location").to_owned();
    let addr = r.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 10\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(b"01234").await.unwrap();
    // Shut down while the body is half sent.
    let stopping = tokio::spawn(r.stop());
    // Stopped accepting: new connections are refused (bounded wait for the listener to close).
    wait_until("listener closed", Duration::from_secs(5), || {
        let addr = addr.clone();
        async move {
            match tokio::net::TcpStream::connect(&addr).await {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepting".to_owned()),
            }
        }
    })
    .await;
    conn.write_all(b"56789").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("range: 0-9"),
        "{answer}"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn requests_over_the_limit_are_shed_with_429() {
    use tokio::io::AsyncWriteExt as _;
    let r = Replica::start_with("a", |c| c.limits.max_requests = 1).await;
    let start = send(
        Method::POST,
        &format!("{}/v2/s/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let loc = start.header("location").to_owned();
    let addr = r.base.trim_start_matches("http://").to_owned();
    // Hold the only permit with a half-sent body.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("PATCH {loc} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 10\r\n\r\n01234");
    conn.write_all(head.as_bytes()).await.unwrap();
    let shed = wait_until("a 429", Duration::from_secs(5), || async {
        let resp = get(&format!("{}/v2/", r.base)).await;
        if resp.status == StatusCode::TOO_MANY_REQUESTS {
            Ok(resp)
        } else {
            Err(resp.status.to_string())
        }
    })
    .await;
    assert_eq!(shed.code(), "TOOMANYREQUESTS");
    assert_eq!(shed.header("retry-after"), "1");
    drop(conn);
    wait_until("permit back", Duration::from_secs(5), || async {
        match get(&format!("{}/v2/", r.base)).await.status {
            StatusCode::OK => Ok(()),
            s => Err(s.to_string()),
        }
    })
    .await;
    r.stop().await;
}

/// How many referrers the registry at `base` lists for `subject` in `repo`.
async fn referrers_of(base: &str, repo: &str, subject: &str) -> usize {
    get(&format!("{base}/v2/{repo}/referrers/{subject}"))
        .await
        .json()["manifests"]
        .as_array()
        .map_or(0, Vec::len)
}
