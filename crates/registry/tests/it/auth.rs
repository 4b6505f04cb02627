//! htpasswd basic auth, the Docker token flow, anonymous pull.

use base64::Engine as _;
use bytes::Bytes;
use geoha_registry::TokenConfig;
use http::{Method, StatusCode};

use crate::harness::*;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A secured replica and the temp dir holding its htpasswd (read at start-up, so it
/// must outlive the start).
async fn secured(anonymous_pull: bool, token: bool) -> (Replica, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&path, format!("# users\nalice:{hash}\n")).unwrap();
    let r = Replica::start_with("a", |c| {
        c.htpasswd = Some(path.clone());
        c.anonymous_pull = anonymous_pull;
        if token {
            c.token = Some(TokenConfig {
                secret: "a secret of sixteen+ bytes".into(),
                service: "geoha-registry".into(),
                realm: None,
                lifetime: std::time::Duration::from_secs(60),
            });
        }
    })
    .await;
    (r, dir)
}

#[tokio::test]
async fn basic_auth_guards_push_and_allows_anonymous_pull() {
    let (r, _htpasswd) = secured(true, false).await;
    let base = get(&format!("{}/v2/", r.base)).await;
    assert_eq!(base.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        base.header("www-authenticate"),
        "Basic realm=\"geoha-registry\""
    );
    assert_eq!(base.code(), "UNAUTHORIZED");
    let push = send(
        Method::POST,
        &format!("{}/v2/app/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    let wrong = basic("alice", "nope");
    let push = send(
        Method::POST,
        &format!("{}/v2/app/blobs/uploads/", r.base),
        &[("authorization", &wrong)],
        Bytes::new(),
    )
    .await;
    assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    let good = basic("alice", "s3cret");
    let d = push_blob_as(&r.base, "app", b"layer", &[("authorization", &good)]).await;
    assert_eq!(
        get_as(&format!("{}/v2/", r.base), &good).await.status,
        StatusCode::OK
    );
    // Anonymous pull.
    assert_eq!(
        get(&format!("{}/v2/app/blobs/{d}", r.base)).await.status,
        StatusCode::OK
    );
    // Anonymous delete is not a pull.
    let del = send(
        Method::DELETE,
        &format!("{}/v2/app/blobs/{d}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(del.status, StatusCode::UNAUTHORIZED);
    r.stop().await;
}

async fn get_as(url: &str, auth: &str) -> Resp {
    send(Method::GET, url, &[("authorization", auth)], Bytes::new()).await
}

#[tokio::test]
async fn pull_needs_credentials_when_anonymous_pull_is_off() {
    let (r, _htpasswd) = secured(false, false).await;
    let d = push_blob_as(
        &r.base,
        "app",
        b"x",
        &[("authorization", &basic("alice", "s3cret"))],
    )
    .await;
    assert_eq!(
        get(&format!("{}/v2/app/blobs/{d}", r.base)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(
            &format!("{}/v2/app/blobs/{d}", r.base),
            &basic("alice", "s3cret")
        )
        .await
        .status,
        StatusCode::OK
    );
    r.stop().await;
}

#[tokio::test]
async fn docker_token_flow_with_repository_scopes() {
    let (r, _htpasswd) = secured(true, true).await;
    let challenge = get(&format!("{}/v2/", r.base)).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let www = challenge.header("www-authenticate").to_owned();
    let host = r.base.trim_start_matches("http://");
    assert_eq!(
        www,
        format!("Bearer realm=\"http://{host}/token\",service=\"geoha-registry\"")
    );
    let push = send(
        Method::POST,
        &format!("{}/v2/app/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert!(
        push.header("www-authenticate")
            .contains("scope=\"repository:app:pull,push\""),
        "{push:?}"
    );

    // Login: a token for /v2/ with basic credentials.
    let login = get_as(
        &format!("{}/token?service=geoha-registry", r.base),
        &basic("alice", "s3cret"),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    let bad = get_as(
        &format!("{}/token?service=geoha-registry", r.base),
        &basic("alice", "x"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let t = login.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_as(&format!("{}/v2/", r.base), &format!("Bearer {t}"))
            .await
            .status,
        StatusCode::OK
    );

    // A scoped token pushes to its repository only.
    let scoped = get_as(
        &format!(
            "{}/token?service=geoha-registry&scope=repository%3Aapp%3Apull%2Cpush",
            r.base
        ),
        &basic("alice", "s3cret"),
    )
    .await
    .json();
    let bearer = format!("Bearer {}", scoped["access_token"].as_str().unwrap());
    assert!(scoped["expires_in"].as_u64().unwrap() > 0);
    push_blob_as(&r.base, "app", b"scoped", &[("authorization", &bearer)]).await;
    let other = send(
        Method::POST,
        &format!("{}/v2/other/blobs/uploads/", r.base),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert!(
        other
            .header("www-authenticate")
            .contains("error=\"insufficient_scope\""),
        "{other:?}"
    );

    // Anonymous tokens carry pull only.
    let anon = get(&format!(
        "{}/token?service=geoha-registry&scope=repository:app:pull,push",
        r.base
    ))
    .await
    .json();
    let anon = format!("Bearer {}", anon["token"].as_str().unwrap());
    let push = send(
        Method::POST,
        &format!("{}/v2/app/blobs/uploads/", r.base),
        &[("authorization", &anon)],
        Bytes::new(),
    )
    .await;
    assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    let pull = get_as(&format!("{}/v2/app/tags/list", r.base), &anon).await;
    assert_ne!(pull.status, StatusCode::UNAUTHORIZED);
    // A forged token is refused.
    let forged = get_as(&format!("{}/v2/", r.base), "Bearer e30.e30.AAAA").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    r.stop().await;
}

#[tokio::test]
async fn replication_between_secured_replicas_needs_the_shared_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(
        &path,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let (rs, _proxies) = mesh(&["east", "west"], |c| {
        c.htpasswd = Some(path.clone());
        c.replication.secret = Some("peer secret".into());
    })
    .await;
    let creds = basic("alice", "s3cret");
    let d = push_blob_as(
        &rs[0].base,
        "sec",
        b"secret layer",
        &[("authorization", &creds)],
    )
    .await;
    crate::harness::wait_until(
        "blob on west",
        std::time::Duration::from_secs(15),
        || async {
            let r = get_as(&format!("{}/v2/sec/blobs/{d}", rs[1].base), &creds).await;
            if r.status == StatusCode::OK {
                Ok(())
            } else {
                Err(r.status.to_string())
            }
        },
    )
    .await;
    // The peer endpoints refuse callers without the secret (they bypass user auth).
    let forged = send(
        Method::POST,
        &format!("{}/_geoha/v1/changes", rs[1].base),
        &[("content-type", "application/json")],
        r#"{"origin":"x","changes":[]}"#,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.code(), "DENIED");
    let peek = get(&format!(
        "{}/_geoha/v1/blob?repo=sec&digest={d}",
        rs[1].base
    ))
    .await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN);
    for r in rs {
        r.stop().await;
    }
}

#[test]
fn secured_peers_without_a_replication_secret_are_a_config_error() {
    let text = "replica_id = \"a\"\nstorage = \"/x\"\nhtpasswd = \"/h\"\n[[peers]]\nid = \"b\"\nurl = \"http://127.0.0.1:1\"\n";
    let err = geoha_registry::Config::from_toml_str(text, std::path::Path::new("r.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("r.toml:0:0: replication.secret: required"),
        "{err}"
    );
}
