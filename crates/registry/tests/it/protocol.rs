//! The OCI distribution API, endpoint by endpoint, with its error codes.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let r = Replica::start("a").await;
    let resp = get(&format!("{}/v2/", r.base)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(resp.json(), serde_json::json!({}));
    let resp = get(&format!("{}/v2", r.base)).await;
    assert_eq!(resp.status, StatusCode::OK);
    r.stop().await;
}

#[tokio::test]
async fn monolithic_upload_and_blob_reads_with_ranges() {
    let r = Replica::start("a").await;
    let data = b"0123456789";
    let d = push_blob(&r.base, "lib/x", data).await;
    let url = format!("{}/v2/lib/x/blobs/{d}", r.base);
    let resp = get(&url).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(&resp.body[..], data);
    assert_eq!(resp.header("docker-content-digest"), d);
    let head = send(Method::HEAD, &url, &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), "10");
    assert!(head.body.is_empty());
    let part = send(Method::GET, &url, &[("range", "bytes=2-5")], Bytes::new()).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], b"2345");
    assert_eq!(part.header("content-range"), "bytes 2-5/10");
    let tail = send(Method::GET, &url, &[("range", "bytes=-3")], Bytes::new()).await;
    assert_eq!(&tail.body[..], b"789");
    let bad = send(Method::GET, &url, &[("range", "bytes=10-")], Bytes::new()).await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Percent-encoded colon in the digest works too.
    let enc = get(&url.replace("sha256:", "sha256%3A")).await;
    assert_eq!(enc.status, StatusCode::OK);
    r.stop().await;
}

#[tokio::test]
async fn single_post_with_digest_creates_the_blob() {
    let r = Replica::start("a").await;
    let d = sha256(b"one shot");
    let resp = send(
        Method::POST,
        &format!("{}/v2/a/blobs/uploads/?digest={d}", r.base),
        &[],
        &b"one shot"[..],
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
    assert_eq!(resp.header("location"), format!("/v2/a/blobs/{d}"));
    assert_eq!(
        get(&format!("{}/v2/a/blobs/{d}", r.base)).await.body,
        Bytes::from_static(b"one shot")
    );
    // A lie is refused and leaves no session behind.
    let lie = send(
        Method::POST,
        &format!("{}/v2/a/blobs/uploads/?digest={}", r.base, sha256(b"other")),
        &[],
        &b"one shot"[..],
    )
    .await;
    assert_eq!(lie.code(), "DIGEST_INVALID");
    assert_eq!(
        std::fs::read_dir(r.data().join("uploads")).unwrap().count(),
        0
    );
    r.stop().await;
}

#[tokio::test]
async fn chunked_upload_with_status_and_out_of_order_416() {
    let r = Replica::start("a").await;
    let start = send(
        Method::POST,
        &format!("{}/v2/a/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let loc = start.header("location").to_owned();
    assert!(!start.header("docker-upload-uuid").is_empty());
    let url = format!("{}{loc}", r.base);
    let p1 = send(
        Method::PATCH,
        &url,
        &[
            ("content-range", "0-4"),
            ("content-type", "application/octet-stream"),
        ],
        &b"hello"[..],
    )
    .await;
    assert_eq!(p1.status, StatusCode::ACCEPTED, "{p1:?}");
    assert_eq!(p1.header("range"), "0-4");
    // A chunk that does not start where the upload is: 416 and the current range.
    let bad = send(
        Method::PATCH,
        &url,
        &[("content-range", "7-9")],
        &b"xyz"[..],
    )
    .await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.header("range"), "0-4");
    let status = get(&url).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-4");
    let p2 = send(
        Method::PATCH,
        &url,
        &[("content-range", "5-10")],
        &b" world"[..],
    )
    .await;
    assert_eq!(p2.status, StatusCode::ACCEPTED);
    let d = sha256(b"hello world!");
    let done = send(Method::PUT, &format!("{url}?digest={d}"), &[], &b"!"[..]).await;
    assert_eq!(done.status, StatusCode::CREATED, "{done:?}");
    assert_eq!(done.header("docker-content-digest"), d);
    assert_eq!(
        get(&format!("{}/v2/a/blobs/{d}", r.base)).await.body,
        Bytes::from_static(b"hello world!")
    );
    // The finished session is gone.
    assert_eq!(get(&url).await.code(), "BLOB_UPLOAD_UNKNOWN");
    r.stop().await;
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_nothing_is_stored() {
    let r = Replica::start("a").await;
    let start = send(
        Method::POST,
        &format!("{}/v2/a/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let url = format!("{}{}", r.base, start.header("location"));
    let lie = sha256(b"something else");
    let resp = send(
        Method::PUT,
        &format!("{url}?digest={lie}"),
        &[],
        &b"data"[..],
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "DIGEST_INVALID");
    assert_eq!(
        get(&format!("{}/v2/a/blobs/{lie}", r.base)).await.code(),
        "BLOB_UNKNOWN"
    );
    let bad = send(
        Method::PUT,
        &format!("{url}?digest=sha256:nothex"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(bad.code(), "DIGEST_INVALID");
    let missing = send(Method::PUT, &url, &[], Bytes::new()).await;
    assert_eq!(missing.code(), "DIGEST_INVALID");
    r.stop().await;
}

#[tokio::test]
async fn cancel_and_unknown_uploads() {
    let r = Replica::start("a").await;
    let start = send(
        Method::POST,
        &format!("{}/v2/a/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let url = format!("{}{}", r.base, start.header("location"));
    assert_eq!(
        send(Method::DELETE, &url, &[], Bytes::new()).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = get(&url).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "BLOB_UPLOAD_UNKNOWN");
    // Upload ids are opaque hex: traversal attempts are just unknown.
    let evil = get(&format!("{}/v2/a/blobs/uploads/..%2F..%2Fetc", r.base)).await;
    assert_eq!(evil.code(), "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to its repository.
    let other = send(
        Method::POST,
        &format!("{}/v2/b/blobs/uploads/", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    let id = other.header("docker-upload-uuid").to_owned();
    assert_eq!(
        get(&format!("{}/v2/a/blobs/uploads/{id}", r.base))
            .await
            .code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    r.stop().await;
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let r = Replica::start("a").await;
    let d = push_blob(&r.base, "src", b"shared layer").await;
    let m = send(
        Method::POST,
        &format!("{}/v2/dst/blobs/uploads/?mount={d}&from=src", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(m.status, StatusCode::CREATED, "{m:?}");
    assert_eq!(m.header("location"), format!("/v2/dst/blobs/{d}"));
    assert_eq!(
        get(&format!("{}/v2/dst/blobs/{d}", r.base)).await.status,
        StatusCode::OK
    );
    // Unknown blob or repository: a normal upload session instead.
    let missing = sha256(b"not here");
    let f = send(
        Method::POST,
        &format!("{}/v2/dst/blobs/uploads/?mount={missing}&from=src", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(f.status, StatusCode::ACCEPTED);
    assert!(f.header("location").starts_with("/v2/dst/blobs/uploads/"));
    r.stop().await;
}

#[tokio::test]
async fn blob_in_another_repository_is_unknown_here_and_delete_works() {
    let r = Replica::start("a").await;
    let d = push_blob(&r.base, "one", b"private").await;
    assert_eq!(
        get(&format!("{}/v2/two/blobs/{d}", r.base)).await.code(),
        "BLOB_UNKNOWN"
    );
    let del = send(
        Method::DELETE,
        &format!("{}/v2/one/blobs/{d}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    let after = get(&format!("{}/v2/one/blobs/{d}", r.base)).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(after.code(), "BLOB_UNKNOWN");
    let again = send(
        Method::DELETE,
        &format!("{}/v2/one/blobs/{d}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(again.code(), "BLOB_UNKNOWN");
    r.stop().await;
}

#[tokio::test]
async fn manifests_by_tag_and_digest_are_byte_for_byte() {
    let r = Replica::start("a").await;
    let (d, bytes) = push_image(&r.base, "app", "v1", "one").await;
    for reference in ["v1", d.as_str()] {
        let resp = get(&format!("{}/v2/app/manifests/{reference}", r.base)).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body, Bytes::from(bytes.clone()), "verbatim");
        assert_eq!(resp.header("content-type"), OCI_MANIFEST);
        assert_eq!(resp.header("docker-content-digest"), d);
        let head = send(
            Method::HEAD,
            &format!("{}/v2/app/manifests/{reference}", r.base),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), bytes.len().to_string());
        assert!(head.body.is_empty());
    }
    // PUT by digest must match the body.
    let wrong = send(
        Method::PUT,
        &format!("{}/v2/app/manifests/{}", r.base, sha256(b"x")),
        &[("content-type", OCI_MANIFEST)],
        bytes.clone(),
    )
    .await;
    assert_eq!(wrong.code(), "DIGEST_INVALID");
    let by_digest = send(
        Method::PUT,
        &format!("{}/v2/app/manifests/{d}", r.base),
        &[("content-type", OCI_MANIFEST)],
        bytes,
    )
    .await;
    assert_eq!(by_digest.status, StatusCode::CREATED);
    assert_eq!(
        get(&format!("{}/v2/app/manifests/v2", r.base)).await.code(),
        "MANIFEST_UNKNOWN"
    );
    let head = send(
        Method::HEAD,
        &format!("{}/v2/app/manifests/nope", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    r.stop().await;
}

#[tokio::test]
async fn manifest_errors_invalid_unknown_blob_and_too_large() {
    let r = Replica::start_with("a", |c| c.limits.max_manifest_bytes = 2048).await;
    let url = format!("{}/v2/app/manifests/t", r.base);
    let garbage = send(
        Method::PUT,
        &url,
        &[("content-type", OCI_MANIFEST)],
        &b"{not json"[..],
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.code(), "MANIFEST_INVALID");
    let ghost = sha256(b"ghost");
    let m = image_manifest((&ghost, 5), &[], None);
    let unknown = send(Method::PUT, &url, &[("content-type", OCI_MANIFEST)], m).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.code(), "MANIFEST_BLOB_UNKNOWN");
    let big = vec![b' '; 4096];
    let too_big = send(Method::PUT, &url, &[("content-type", OCI_MANIFEST)], big).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.code(), "SIZE_INVALID");
    let bad_tag = send(
        Method::PUT,
        &format!("{}/v2/app/manifests/.hidden", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(bad_tag.status, StatusCode::BAD_REQUEST);
    let bad_name = get(&format!("{}/v2/Bad/Name/manifests/x", r.base)).await;
    assert_eq!(bad_name.code(), "NAME_INVALID");
    let traversal = get(&format!("{}/v2/a/../../etc/manifests/x", r.base)).await;
    assert_ne!(traversal.status, StatusCode::OK);
    assert!(tags_dir_is_clean(&r));
    r.stop().await;
}

fn tags_dir_is_clean(r: &Replica) -> bool {
    !r.data()
        .join("repos")
        .join("app")
        .join("_tags")
        .join("t")
        .exists()
}

#[tokio::test]
async fn docker_schema2_manifest_and_index_with_child_check() {
    let r = Replica::start("a").await;
    let (child, _) = push_image(&r.base, "multi", "amd64", "amd64").await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]
    }))
    .unwrap();
    let resp = send(
        Method::PUT,
        &format!("{}/v2/multi/manifests/latest", r.base),
        &[(
            "content-type",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )],
        index.clone(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
    let got = get(&format!("{}/v2/multi/manifests/latest", r.base)).await;
    assert_eq!(
        got.header("content-type"),
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(got.body, Bytes::from(index));
    // An index whose child is not in the repository is refused.
    let orphan = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 1}]
    }))
    .unwrap();
    let resp = send(
        Method::PUT,
        &format!("{}/v2/multi/manifests/x", r.base),
        &[("content-type", OCI_INDEX)],
        orphan,
    )
    .await;
    assert_eq!(resp.code(), "MANIFEST_BLOB_UNKNOWN");
    // Docker schema2 image manifest.
    let cfg = push_blob(&r.base, "d", b"{}").await;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 2},
        "layers": []
    }))
    .unwrap();
    let resp = send(
        Method::PUT,
        &format!("{}/v2/d/manifests/1", r.base),
        &[(
            "content-type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        m,
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let got = get(&format!("{}/v2/d/manifests/1", r.base)).await;
    assert_eq!(
        got.header("content-type"),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    r.stop().await;
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// GET (or HEAD) of a manifest with these `Accept` header values (one header each).
async fn get_accepting(url: &str, method: Method, accept: &[&str]) -> Resp {
    let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
    send(method, url, &headers, Bytes::new()).await
}

/// Pushes a Docker schema2 image manifest by digest; returns its digest and bytes.
async fn push_docker_image(base: &str, repo: &str, seed: &str) -> (String, Vec<u8>) {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let c = push_blob(base, repo, config.as_bytes()).await;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": c, "size": config.len()},
        "layers": []
    }))
    .unwrap();
    let d = sha256(&m);
    let r = send(
        Method::PUT,
        &format!("{base}/v2/{repo}/manifests/{d}"),
        &[("content-type", DOCKER_MANIFEST)],
        m.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    (d, m)
}

/// Pushes a manifest list or index under `tag`; returns its digest and bytes.
async fn push_list(
    base: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    children: &[(&str, &str, &str, &str)],
) -> (String, Vec<u8>) {
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type,
        "manifests": children.iter().map(|(child_type, digest, os, arch)| serde_json::json!({
            "mediaType": child_type, "digest": digest, "size": 1,
            "platform": {"os": os, "architecture": arch}
        })).collect::<Vec<_>>()
    }))
    .unwrap();
    let r = send(
        Method::PUT,
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("content-type", media_type)],
        list.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    (sha256(&list), list)
}

#[tokio::test]
async fn an_oci_manifest_or_index_the_client_does_not_accept_is_unknown() {
    let r = Replica::start("a").await;
    let (d, bytes) = push_image(&r.base, "neg", "v1", "neg").await;
    for reference in ["v1", d.as_str()] {
        let url = format!("{}/v2/neg/manifests/{reference}", r.base);
        let refused = get_accepting(&url, Method::GET, &[DOCKER_MANIFEST, DOCKER_LIST]).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND);
        assert_eq!(refused.code(), "MANIFEST_UNKNOWN");
        assert_eq!(
            refused.json()["errors"][0]["message"],
            "OCI manifest found, but accept header does not support OCI manifests"
        );
        let head = get_accepting(&url, Method::HEAD, &[DOCKER_MANIFEST]).await;
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        assert!(head.body.is_empty());
        // No Accept header, a wildcard, the type among others (any header, any
        // spacing, parameters): the manifest as stored.
        for accept in [
            &[][..],
            &["*/*"][..],
            &["application/json, */*;q=0.1"][..],
            &[
                DOCKER_MANIFEST,
                "application/vnd.oci.image.manifest.v1+json; q=0.5",
            ][..],
        ] {
            let got = get_accepting(&url, Method::GET, accept).await;
            assert_eq!(got.status, StatusCode::OK, "{accept:?}");
            assert_eq!(got.body, Bytes::from(bytes.clone()));
            let head = get_accepting(&url, Method::HEAD, accept).await;
            assert_eq!(head.status, StatusCode::OK, "{accept:?}");
            assert_eq!(head.header("docker-content-digest"), d);
        }
    }
    let (index, _) = push_list(
        &r.base,
        "neg",
        "multi",
        OCI_INDEX,
        &[(OCI_MANIFEST, &d, "linux", "amd64")],
    )
    .await;
    let url = format!("{}/v2/neg/manifests/multi", r.base);
    let refused = get_accepting(&url, Method::GET, &[OCI_MANIFEST]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.code(), "MANIFEST_UNKNOWN");
    assert_eq!(
        refused.json()["errors"][0]["message"],
        "OCI index found, but accept header does not support OCI indexes"
    );
    let got = get_accepting(&url, Method::GET, &[OCI_MANIFEST, OCI_INDEX]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("docker-content-digest"), index);
    r.stop().await;
}

#[tokio::test]
async fn a_docker_list_the_client_does_not_accept_becomes_its_linux_amd64_image() {
    let r = Replica::start("a").await;
    let (amd64, amd64_bytes) = push_docker_image(&r.base, "lists", "amd64").await;
    let (arm64, _) = push_docker_image(&r.base, "lists", "arm64").await;
    let (list, list_bytes) = push_list(
        &r.base,
        "lists",
        "latest",
        DOCKER_LIST,
        &[
            (DOCKER_MANIFEST, &arm64, "linux", "arm64"),
            (DOCKER_MANIFEST, &amd64, "linux", "amd64"),
        ],
    )
    .await;
    let by_tag = format!("{}/v2/lists/manifests/latest", r.base);
    for method in [Method::GET, Method::HEAD] {
        let got = get_accepting(&by_tag, method.clone(), &[DOCKER_MANIFEST]).await;
        assert_eq!(got.status, StatusCode::OK, "{method}");
        assert_eq!(got.header("content-type"), DOCKER_MANIFEST);
        assert_eq!(got.header("docker-content-digest"), amd64);
        assert_eq!(got.header("content-length"), amd64_bytes.len().to_string());
        if method == Method::GET {
            assert_eq!(got.body, Bytes::from(amd64_bytes.clone()));
        }
    }
    // Clients that take lists get the list.
    let got = get_accepting(&by_tag, Method::GET, &[DOCKER_MANIFEST, DOCKER_LIST]).await;
    assert_eq!(got.header("docker-content-digest"), list);
    assert_eq!(got.body, Bytes::from(list_bytes.clone()));
    // By digest, nothing but the list itself matches what was asked for.
    let by_digest = format!("{}/v2/lists/manifests/{list}", r.base);
    let got = get_accepting(&by_digest, Method::GET, &[DOCKER_MANIFEST]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, Bytes::from(list_bytes));
    // The picked image must suit the client too (distribution's code and message).
    let refused = get_accepting(&by_tag, Method::GET, &[OCI_MANIFEST]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "MANIFEST_INVALID");
    assert_eq!(
        refused.json()["errors"][0]["message"],
        "Schema 2 manifest not supported by client"
    );
    // No linux/amd64 image: unknown.
    push_list(
        &r.base,
        "lists",
        "arm",
        DOCKER_LIST,
        &[(DOCKER_MANIFEST, &arm64, "linux", "arm64")],
    )
    .await;
    let url = format!("{}/v2/lists/manifests/arm", r.base);
    let refused = get_accepting(&url, Method::GET, &[DOCKER_MANIFEST]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.code(), "MANIFEST_UNKNOWN");
    // A Docker image manifest is sent whatever the client accepts (distribution no
    // longer rewrites it as schema 1).
    let url = format!("{}/v2/lists/manifests/{amd64}", r.base);
    let got = get_accepting(&url, Method::GET, &[OCI_MANIFEST]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), DOCKER_MANIFEST);
    r.stop().await;
}

#[tokio::test]
async fn tags_list_paginates_with_link() {
    let r = Replica::start("a").await;
    let (_, bytes) = push_image(&r.base, "p", "a", "s").await;
    for tag in ["b", "c", "d", "e"] {
        let resp = send(
            Method::PUT,
            &format!("{}/v2/p/manifests/{tag}", r.base),
            &[("content-type", OCI_MANIFEST)],
            bytes.clone(),
        )
        .await;
        assert_eq!(resp.status, StatusCode::CREATED);
    }
    let all = get(&format!("{}/v2/p/tags/list", r.base)).await;
    assert_eq!(
        all.json(),
        serde_json::json!({"name": "p", "tags": ["a", "b", "c", "d", "e"]})
    );
    let page = get(&format!("{}/v2/p/tags/list?n=2", r.base)).await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        "</v2/p/tags/list?n=2&last=b>; rel=\"next\""
    );
    let next = get(&format!("{}/v2/p/tags/list?n=2&last=b", r.base)).await;
    assert_eq!(next.json()["tags"], serde_json::json!(["c", "d"]));
    let last = get(&format!("{}/v2/p/tags/list?n=2&last=d", r.base)).await;
    assert_eq!(last.json()["tags"], serde_json::json!(["e"]));
    assert_eq!(last.header("link"), "");
    let zero = get(&format!("{}/v2/p/tags/list?n=0", r.base)).await;
    assert_eq!(zero.json()["tags"], serde_json::json!([]));
    assert_eq!(
        get(&format!("{}/v2/nothing/tags/list", r.base))
            .await
            .code(),
        "NAME_UNKNOWN"
    );
    r.stop().await;
}

#[tokio::test]
async fn delete_manifest_by_tag_and_by_digest() {
    let r = Replica::start("a").await;
    let (d, bytes) = push_image(&r.base, "del", "v1", "x").await;
    send(
        Method::PUT,
        &format!("{}/v2/del/manifests/v2", r.base),
        &[("content-type", OCI_MANIFEST)],
        bytes,
    )
    .await;
    let del = send(
        Method::DELETE,
        &format!("{}/v2/del/manifests/v1", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(
        get(&format!("{}/v2/del/manifests/v1", r.base)).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        get(&format!("{}/v2/del/manifests/{d}", r.base))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&format!("{}/v2/del/tags/list", r.base)).await.json()["tags"],
        serde_json::json!(["v2"])
    );
    let del = send(
        Method::DELETE,
        &format!("{}/v2/del/manifests/{d}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(
        get(&format!("{}/v2/del/manifests/{d}", r.base))
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        get(&format!("{}/v2/del/manifests/v2", r.base)).await.code(),
        "MANIFEST_UNKNOWN"
    );
    // A tag whose manifest is gone is no longer listed.
    assert_eq!(
        get(&format!("{}/v2/del/tags/list", r.base)).await.json()["tags"],
        serde_json::json!([])
    );
    let again = send(
        Method::DELETE,
        &format!("{}/v2/del/manifests/{d}", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    r.stop().await;
}

#[tokio::test]
async fn subject_header_and_referrers_with_artifact_type_filter() {
    let r = Replica::start("a").await;
    let (subject, sbytes) = push_image(&r.base, "ref", "v1", "base").await;
    let empty = push_blob(&r.base, "ref", b"{}").await;
    let mut push_ref = Vec::new();
    for (i, artifact) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": sbytes.len()},
            "annotations": {"n": i.to_string()}
        }))
        .unwrap();
        let d = sha256(&m);
        let resp = send(
            Method::PUT,
            &format!("{}/v2/ref/manifests/{d}", r.base),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
        assert_eq!(resp.header("oci-subject"), subject);
        push_ref.push(d);
    }
    let all = get(&format!("{}/v2/ref/referrers/{subject}", r.base)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("content-type"), OCI_INDEX);
    let list = all.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(all.header("oci-filters-applied"), "");
    let sig = get(&format!(
        "{}/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sig",
        r.base
    ))
    .await;
    assert_eq!(sig.header("oci-filters-applied"), "artifactType");
    let m = sig.json();
    assert_eq!(m["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(m["manifests"][0]["digest"], push_ref[1].as_str());
    assert_eq!(m["manifests"][0]["annotations"]["n"], "1");
    // Unknown subject: an empty index, not 404.
    let none = get(&format!("{}/v2/ref/referrers/{}", r.base, sha256(b"zzz"))).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"], serde_json::json!([]));
    // A deleted referrer disappears.
    send(
        Method::DELETE,
        &format!("{}/v2/ref/manifests/{}", r.base, push_ref[0]),
        &[],
        Bytes::new(),
    )
    .await;
    let after = get(&format!("{}/v2/ref/referrers/{subject}", r.base)).await;
    assert_eq!(after.json()["manifests"].as_array().unwrap().len(), 1);
    let bad = get(&format!("{}/v2/ref/referrers/notadigest", r.base)).await;
    assert_eq!(bad.code(), "DIGEST_INVALID");
    r.stop().await;
}

#[tokio::test]
async fn unsupported_methods_and_unknown_endpoints() {
    let r = Replica::start("a").await;
    let resp = send(
        Method::POST,
        &format!("{}/v2/a/tags/list", r.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.code(), "UNSUPPORTED");
    let resp = get(&format!("{}/v2/a/whatever", r.base)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.json()["errors"][0]["message"].is_string());
    r.stop().await;
}

#[tokio::test]
async fn tag_history_lists_every_version() {
    let r = Replica::start("a").await;
    let (d1, _) = push_image(&r.base, "h", "latest", "one").await;
    let (d2, _) = push_image(&r.base, "h", "latest", "two").await;
    let h = get(&format!("{}/v2/h/tags/latest/history", r.base))
        .await
        .json();
    assert_eq!(h["current"], d2.as_str());
    let digests: Vec<_> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(digests, vec![d1.clone(), d2]);
    // The overwritten digest stays pullable.
    assert_eq!(
        get(&format!("{}/v2/h/manifests/{d1}", r.base)).await.status,
        StatusCode::OK
    );
    r.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let r = Replica::start("a").await;
    push_image(&r.base, "m", "v", "m").await;
    let m = get(&format!("{}/metrics", r.base)).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    assert!(
        text.contains("# TYPE geoha_registry_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("geoha_registry_manifests_pushed_total{replica=\"a\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("geoha_registry_blobs_pushed_total{replica=\"a\"} 2"),
        "{text}"
    );
    r.stop().await;
}

#[tokio::test]
async fn manifest_put_by_digest_with_tag_parameters() {
    let r = Replica::start("a").await;
    let (_, bytes) = push_image(&r.base, "qt", "first", "q").await;
    let d = sha256(&bytes);
    let resp = send(
        Method::PUT,
        &format!("{}/v2/qt/manifests/{d}?tag=one&tag=two", r.base),
        &[("content-type", OCI_MANIFEST)],
        bytes,
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let tags: Vec<_> = resp
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, vec!["one", "two"]);
    assert_eq!(
        get(&format!("{}/v2/qt/tags/list", r.base)).await.json()["tags"],
        serde_json::json!(["first", "one", "two"])
    );
    r.stop().await;
}

#[tokio::test]
async fn catalog_lists_repositories_with_pagination() {
    let r = Replica::start("a").await;
    for repo in ["b/one", "a", "c"] {
        push_blob(&r.base, repo, repo.as_bytes()).await;
    }
    let all = get(&format!("{}/v2/_catalog", r.base)).await;
    assert_eq!(
        all.json(),
        serde_json::json!({"repositories": ["a", "b/one", "c"]})
    );
    let page = get(&format!("{}/v2/_catalog?n=1&last=a", r.base)).await;
    assert_eq!(page.json()["repositories"], serde_json::json!(["b/one"]));
    assert_eq!(
        page.header("link"),
        "</v2/_catalog?n=1&last=b/one>; rel=\"next\""
    );
    r.stop().await;
}
