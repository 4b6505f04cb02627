//! The HTTP surface: the OCI distribution API under `/v2/`, the token endpoint,
//! `/metrics`, and the internal replication endpoints under `/_geoha/v1/`. Handlers
//! parse and authorize, then call [`Registry`]; every error leaves as an [`OciError`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::auth::{form_pairs, Action, Auth};
use crate::digest::Digest;
use crate::error::{OciCode, OciError};
use crate::manifest::{self, Accepted, Negotiated, OCI_INDEX};
use crate::names::{valid_tag, RepoName};
use crate::registry::{Reference, Registry};
use crate::replicate::{self, PeerApi, Replication};

/// What the `/v2/` handlers share.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    reg: Arc<Registry>,
    rep: Arc<Replication>,
    auth: Arc<Auth>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Builds the whole router.
pub(crate) fn router(reg: Arc<Registry>, rep: Arc<Replication>, auth: Arc<Auth>) -> Router {
    let permits = Arc::new(tokio::sync::Semaphore::new(reg.limits.max_requests));
    let api = Api {
        reg: Arc::clone(&reg),
        rep: Arc::clone(&rep),
        auth,
        permits,
    };
    let peer = PeerApi { reg, rep };
    let internal = Router::new()
        .route("/_geoha/v1/replication", get(replicate::status))
        .route("/_geoha/v1/changes", post(replicate::receive_changes))
        .route("/_geoha/v1/blobs/{digest}", any(replicate::peer_blob))
        .route("/_geoha/v1/blob", get(replicate::peer_fetch_blob))
        .route("/_geoha/v1/manifest", get(replicate::peer_fetch_manifest))
        .route("/_geoha/v1/snapshot", get(replicate::snapshot))
        .with_state(peer);
    Router::new()
        .route("/v2", any(v2))
        .route("/v2/", any(v2))
        .route("/v2/{*rest}", any(v2))
        .route("/token", get(token))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(api.clone())
        .merge(internal)
        // Outermost: every answer carries the API version and is counted; requests over
        // the concurrency limit are shed with 429 instead of queueing without bound.
        .layer(axum::middleware::from_fn_with_state(api, common_headers))
}

async fn common_headers(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Ok(_permit) = api.permits.clone().try_acquire_owned() else {
        let mut resp = OciError::new(OciCode::TooManyRequests).into_response();
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        api.reg.metrics.count_status(429);
        return resp;
    };
    let mut resp = next.run(req).await;
    api.reg.metrics.count_status(resp.status().as_u16());
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn metrics(State(api): State<Api>) -> Response {
    let text = api.reg.metrics.render(
        &api.reg.replica_id,
        api.reg.log.head(),
        &api.rep.status(&api.reg),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn token(State(api): State<Api>, uri: Uri, headers: HeaderMap) -> Response {
    match api
        .auth
        .issue_token(&headers, uri.query().unwrap_or(""))
        .await
    {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A parsed `/v2/...` path.
#[derive(Debug)]
enum Route {
    Base,
    Catalog,
    Blob(RepoName, String),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Manifest(RepoName, String),
    Tags(RepoName),
    Referrers(RepoName, String),
    TagHistory(RepoName, String),
}

fn parse_route(path: &str) -> Result<Route, OciError> {
    let rest = path
        .strip_prefix("/v2")
        .unwrap_or(path)
        .trim_start_matches('/');
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let seg: Vec<&str> = rest.split('/').collect();
    let n = seg.len();
    let name = |k: usize| -> Result<RepoName, OciError> {
        let joined = seg[..k].join("/");
        RepoName::parse(&joined).ok_or_else(|| {
            OciError::new(OciCode::NameInvalid)
                .detail(format!("invalid repository name {joined:?}"))
        })
    };
    let last = decode_colon(seg[n - 1]);
    if n >= 3 && seg[n - 3] == "blobs" && seg[n - 2] == "uploads" && seg[n - 1].is_empty() && n >= 4
    {
        return Ok(Route::UploadStart(name(n - 3)?));
    }
    if n >= 3 && seg[n - 2] == "blobs" && seg[n - 1] == "uploads" {
        return Ok(Route::UploadStart(name(n - 2)?));
    }
    if n >= 4 && seg[n - 3] == "blobs" && seg[n - 2] == "uploads" {
        return Ok(Route::Upload(name(n - 3)?, last));
    }
    if n >= 2 && seg[n - 2] == "blobs" {
        return Ok(Route::Blob(name(n - 2)?, last));
    }
    if n >= 2 && seg[n - 2] == "manifests" {
        return Ok(Route::Manifest(name(n - 2)?, last));
    }
    if n >= 2 && seg[n - 2] == "tags" && seg[n - 1] == "list" {
        return Ok(Route::Tags(name(n - 2)?));
    }
    if n >= 2 && seg[n - 2] == "referrers" {
        return Ok(Route::Referrers(name(n - 2)?, last));
    }
    if n >= 4 && seg[n - 3] == "tags" && seg[n - 1] == "history" {
        return Ok(Route::TagHistory(name(n - 3)?, seg[n - 2].to_owned()));
    }
    Err(OciError::new(OciCode::NameUnknown).detail("no such endpoint"))
}

fn decode_colon(s: &str) -> String {
    s.replace("%3A", ":").replace("%3a", ":")
}

/// A tag or a digest.
pub(crate) fn parse_reference(s: &str) -> Result<Reference, OciError> {
    if s.contains(':') {
        return Ok(Reference::Digest(s.parse()?));
    }
    if valid_tag(s) {
        Ok(Reference::Tag(s.to_owned()))
    } else {
        Err(OciError::new(OciCode::ManifestInvalid)
            .detail(format!("invalid tag {s:?}"))
            .status(StatusCode::BAD_REQUEST))
    }
}

fn parse_digest(s: &str) -> Result<Digest, OciError> {
    Ok(s.parse::<Digest>()?)
}

async fn v2(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match dispatch(&api, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            if method == Method::HEAD {
                *r.body_mut() = Body::empty();
            }
            r
        }
    }
}

async fn dispatch(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let query = form_pairs(uri.query().unwrap_or(""));
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let route = parse_route(uri.path())?;
    let auth = &api.auth;
    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => {
            auth.authorize(headers, None, Action::Pull).await?;
            Ok(json_response(StatusCode::OK, "{}".to_owned()))
        }
        (Route::Catalog, Method::GET) => {
            // Listing every repository needs credentials whenever auth is on.
            auth.authorize(headers, None, Action::Pull).await?;
            catalog(api, q("n"), q("last")).await
        }
        (Route::Blob(name, d), m @ (Method::GET | Method::HEAD)) => {
            auth.authorize(headers, Some(&name), Action::Pull).await?;
            let digest = parse_digest(&d)?;
            get_blob(api, &name, &digest, headers, m == Method::HEAD).await
        }
        (Route::Blob(name, d), Method::DELETE) => {
            auth.authorize(headers, Some(&name), Action::Delete).await?;
            let digest = parse_digest(&d)?;
            api.reg.delete_blob(&name, &digest).await?;
            Ok(empty(StatusCode::ACCEPTED, &[]))
        }
        (Route::UploadStart(name), Method::POST) => {
            auth.authorize(headers, Some(&name), Action::Push).await?;
            start_upload(
                api,
                &name,
                headers,
                q("mount"),
                q("from"),
                q("digest"),
                body,
            )
            .await
        }
        (Route::Upload(name, id), m) => {
            auth.authorize(headers, Some(&name), Action::Push).await?;
            upload(api, &name, &id, m, headers, q("digest"), body).await
        }
        (Route::Manifest(name, r), m @ (Method::GET | Method::HEAD)) => {
            auth.authorize(headers, Some(&name), Action::Pull).await?;
            let reference = parse_reference(&r)?;
            let accepted = Accepted::parse(
                headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            get_manifest(api, &name, &reference, &accepted, m == Method::HEAD).await
        }
        (Route::Manifest(name, r), Method::PUT) => {
            auth.authorize(headers, Some(&name), Action::Push).await?;
            let reference = parse_reference(&r)?;
            let tags: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone())
                .collect();
            if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
                return Err(
                    OciError::new(OciCode::ManifestInvalid).detail(format!("invalid tag {bad:?}"))
                );
            }
            put_manifest(api, &name, &reference, &tags, headers, body).await
        }
        (Route::Manifest(name, r), Method::DELETE) => {
            auth.authorize(headers, Some(&name), Action::Delete).await?;
            let reference = parse_reference(&r)?;
            api.reg.delete_manifest(&name, &reference).await?;
            Ok(empty(StatusCode::ACCEPTED, &[]))
        }
        (Route::Tags(name), Method::GET) => {
            auth.authorize(headers, Some(&name), Action::Pull).await?;
            list_tags(api, &name, q("n"), q("last")).await
        }
        (Route::Referrers(name, d), Method::GET) => {
            auth.authorize(headers, Some(&name), Action::Pull).await?;
            let digest = parse_digest(&d)?;
            referrers(api, &name, &digest, q("artifactType")).await
        }
        (Route::TagHistory(name, tag), Method::GET) => {
            auth.authorize(headers, Some(&name), Action::Pull).await?;
            tag_history(api, &name, &tag).await
        }
        _ => {
            Err(OciError::new(OciCode::Unsupported)
                .detail(format!("{method} is not supported here")))
        }
    }
}

// === blobs ===

async fn get_blob(
    api: &Api,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, OciError> {
    let link = match api.reg.blob_link(name, digest).await? {
        Some(l) => Some(l),
        None => api.rep.read_through_blob(&api.reg, name, digest).await,
    };
    if link.is_none() {
        return Err(OciError::new(OciCode::BlobUnknown).detail(digest.to_string()));
    }
    let path = api.reg.store.blob_path(digest);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| OciError::new(OciCode::BlobUnknown))?;
    let len = file.metadata().await.map_err(OciError::internal)?.len();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, len) {
            Ok(r) => r,
            Err(()) => {
                return Err(OciError::new(OciCode::RangeInvalid)
                    .header(header::CONTENT_RANGE, &format!("bytes */{len}")));
            }
        },
    };
    let dig = digest.to_string();
    let (status, start, count, mut extra) = match range {
        Some((s, e)) => (
            StatusCode::PARTIAL_CONTENT,
            s,
            e - s + 1,
            vec![("content-range", format!("bytes {s}-{e}/{len}"))],
        ),
        None => (StatusCode::OK, 0, len, Vec::new()),
    };
    extra.push(("docker-content-digest", dig.clone()));
    extra.push(("etag", format!("\"{dig}\"")));
    extra.push(("accept-ranges", "bytes".to_owned()));
    extra.push(("content-type", "application/octet-stream".to_owned()));
    extra.push(("content-length", count.to_string()));
    if head {
        return Ok(with_headers(
            Response::builder().status(status),
            &extra,
            Body::empty(),
        ));
    }
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(OciError::internal)?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), 256 * 1024);
    Ok(with_headers(
        Response::builder().status(status),
        &extra,
        Body::from_stream(stream),
    ))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`; `Ok(None)` for forms we ignore (multi-range),
/// `Err` when unsatisfiable.
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn start_upload(
    api: &Api,
    name: &RepoName,
    headers: &HeaderMap,
    mount: Option<String>,
    from: Option<String>,
    digest: Option<String>,
    body: Body,
) -> Result<Response, OciError> {
    if let Some(mount) = mount {
        let d = parse_digest(&mount)?;
        // Mount only from a repository the caller may read; anything else falls back
        // to a normal upload, as the spec requires.
        if let Some(from) = from.as_deref().and_then(RepoName::parse) {
            if api
                .auth
                .authorize(headers, Some(&from), Action::Pull)
                .await
                .is_ok()
            {
                if let Some(link) = api.reg.blob_link(&from, &d).await? {
                    api.reg.link_blob(name, &d, link.size).await?;
                    return Ok(blob_created(name, &d));
                }
            }
        }
    }
    let digest = digest.as_deref().map(parse_digest).transpose()?;
    let session = api.reg.uploads.create(name).await?;
    let mut s = session.lock().await;
    if let Some(d) = digest {
        // A single-request upload: the client never learns the session, so a failure
        // ends it here rather than leaving it for gc.
        let done = match s.append(body).await {
            Ok(_) => api.reg.uploads.finish(&mut s, &d).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let _ = api.reg.uploads.cancel(&mut s).await;
            return Err(e);
        }
        api.reg.link_blob(name, &d, s.size).await?;
        return Ok(blob_created(name, &d));
    }
    Ok(upload_accepted(
        name,
        &s.id,
        "0-0".to_owned(),
        StatusCode::ACCEPTED,
    ))
}

async fn upload(
    api: &Api,
    name: &RepoName,
    id: &str,
    method: Method,
    headers: &HeaderMap,
    digest: Option<String>,
    body: Body,
) -> Result<Response, OciError> {
    let session = api.reg.uploads.get(name, id).await?;
    let mut s = session.lock().await;
    let check_range = |s: &crate::upload::Session| -> Result<(), OciError> {
        let Some(cr) = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(());
        };
        let cr = cr
            .trim()
            .trim_start_matches("bytes")
            .trim()
            .trim_start_matches('=');
        let start = cr
            .split('-')
            .next()
            .and_then(|x| x.trim().parse::<u64>().ok());
        if start != Some(s.size) {
            return Err(OciError::new(OciCode::RangeInvalid)
                .detail(format!(
                    "upload is at offset {}, chunk starts at {cr}",
                    s.size
                ))
                .header(header::RANGE, &s.range())
                .header(
                    header::LOCATION,
                    &format!("/v2/{name}/blobs/uploads/{}", s.id),
                )
                .header(http::HeaderName::from_static("docker-upload-uuid"), &s.id));
        }
        Ok(())
    };
    match method {
        Method::GET => Ok(upload_accepted(
            name,
            &s.id,
            s.range(),
            StatusCode::NO_CONTENT,
        )),
        Method::PATCH => {
            check_range(&s)?;
            s.append(body).await?;
            Ok(upload_accepted(
                name,
                &s.id,
                s.range(),
                StatusCode::ACCEPTED,
            ))
        }
        Method::PUT => {
            let d = digest.ok_or_else(|| {
                OciError::new(OciCode::DigestInvalid).detail("digest query parameter missing")
            })?;
            let d = parse_digest(&d)?;
            if headers.contains_key(header::CONTENT_RANGE) {
                check_range(&s)?;
            }
            s.append(body).await?;
            api.reg.uploads.finish(&mut s, &d).await?;
            api.reg.link_blob(name, &d, s.size).await?;
            Ok(blob_created(name, &d))
        }
        Method::DELETE => {
            api.reg.uploads.cancel(&mut s).await?;
            Ok(empty(StatusCode::NO_CONTENT, &[]))
        }
        _ => Err(OciError::new(OciCode::Unsupported)),
    }
}

fn blob_created(name: &RepoName, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

fn upload_accepted(name: &RepoName, id: &str, range: String, status: StatusCode) -> Response {
    empty(
        status,
        &[
            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("range", range),
            ("docker-upload-uuid", id.to_owned()),
        ],
    )
}

// === manifests ===

/// `GET`/`HEAD` of a manifest, negotiated against the client's `Accept` header like
/// distribution (see [`manifest::negotiate`]); no header, `*/*` or `application/*`
/// admit every type, so the stored manifest is sent.
async fn get_manifest(
    api: &Api,
    name: &RepoName,
    reference: &Reference,
    accepted: &Accepted,
    head: bool,
) -> Result<Response, OciError> {
    let (mut digest, mut media_type, mut bytes) = read_manifest(api, name, reference).await?;
    let by_tag = matches!(reference, Reference::Tag(_));
    if let Negotiated::PlatformImage(image) =
        manifest::negotiate(&media_type, &bytes, accepted, by_tag)?
    {
        (digest, media_type, bytes) = read_manifest(api, name, &Reference::Digest(image)).await?;
        manifest::check_platform_image(&media_type, accepted)?;
    }
    let hdrs = [
        ("content-type", media_type),
        ("docker-content-digest", digest.to_string()),
        ("etag", format!("\"{digest}\"")),
        ("content-length", bytes.len().to_string()),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Ok(with_headers(
        Response::builder().status(StatusCode::OK),
        &hdrs,
        body,
    ))
}

/// A manifest's digest, media type and bytes, from here or (read-through) a peer.
async fn read_manifest(
    api: &Api,
    name: &RepoName,
    reference: &Reference,
) -> Result<(Digest, String, Vec<u8>), OciError> {
    let found = match api.reg.find_manifest(name, reference).await? {
        Some(f) => Some(f),
        None => {
            api.rep
                .read_through_manifest(&api.reg, name, reference)
                .await
        }
    };
    let found = found.ok_or_else(|| OciError::new(OciCode::ManifestUnknown))?;
    let bytes = tokio::fs::read(api.reg.store.blob_path(&found.digest))
        .await
        .map_err(OciError::internal)?;
    let media_type = found
        .link
        .media_type
        .unwrap_or_else(|| crate::manifest::OCI_MANIFEST.to_owned());
    Ok((found.digest, media_type, bytes))
}

async fn put_manifest(
    api: &Api,
    name: &RepoName,
    reference: &Reference,
    tags: &[String],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let limit = api.reg.limits.max_manifest_bytes as usize;
    let too_big = || {
        OciError::new(OciCode::SizeInvalid)
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("manifests are limited to {limit} bytes"))
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_big());
    }
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_big()
            } else {
                OciError::new(OciCode::ManifestInvalid).detail(e.to_string())
            }
        })?
        .to_bytes();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (digest, parsed) = api
        .reg
        .put_manifest(name, reference, tags, bytes, content_type)
        .await?;
    let mut hdrs = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(subject) = &parsed.subject {
        hdrs.push(("oci-subject", subject.to_string()));
    }
    for t in tags {
        hdrs.push(("oci-tag", t.clone()));
    }
    Ok(empty(StatusCode::CREATED, &hdrs))
}

// === tags and referrers ===

/// One page of a sorted list after `last`, and the `Link` to the next page if any.
fn paginate<'a>(
    items: &'a [String],
    n: Option<String>,
    last: Option<String>,
    default_n: usize,
    path: &str,
) -> Result<(Vec<&'a String>, Option<String>), OciError> {
    let n = match n {
        None => default_n,
        Some(n) => n.parse::<usize>().map_err(|_| {
            OciError::new(OciCode::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .detail("n must be a number")
        })?,
    };
    let after: Vec<&String> = items
        .iter()
        .filter(|t| last.as_ref().is_none_or(|l| *t > l))
        .collect();
    let page: Vec<&String> = after.iter().take(n).copied().collect();
    let link = match page.last() {
        Some(last) if after.len() > page.len() => {
            Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""))
        }
        _ => None,
    };
    Ok((page, link))
}

fn page_response(body: serde_json::Value, link: Option<String>) -> Response {
    let mut hdrs = vec![("content-type", "application/json".to_owned())];
    if let Some(link) = link {
        hdrs.push(("link", link));
    }
    with_headers(
        Response::builder().status(StatusCode::OK),
        &hdrs,
        Body::from(body.to_string()),
    )
}

async fn list_tags(
    api: &Api,
    name: &RepoName,
    n: Option<String>,
    last: Option<String>,
) -> Result<Response, OciError> {
    let tags = api
        .reg
        .tags(name)
        .await?
        .ok_or_else(|| OciError::new(OciCode::NameUnknown))?;
    let path = format!("/v2/{name}/tags/list");
    let (page, link) = paginate(&tags, n, last, api.reg.limits.tags_page, &path)?;
    Ok(page_response(
        serde_json::json!({ "name": name.as_str(), "tags": page }),
        link,
    ))
}

async fn catalog(api: &Api, n: Option<String>, last: Option<String>) -> Result<Response, OciError> {
    let repos: Vec<String> = api
        .reg
        .store
        .blocking(|s| s.repositories())
        .await?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let (page, link) = paginate(&repos, n, last, api.reg.limits.tags_page, "/v2/_catalog")?;
    Ok(page_response(
        serde_json::json!({ "repositories": page }),
        link,
    ))
}

async fn referrers(
    api: &Api,
    name: &RepoName,
    subject: &Digest,
    artifact_type: Option<String>,
) -> Result<Response, OciError> {
    let mut list = api.reg.referrers(name, subject).await?;
    let mut hdrs = vec![("content-type", OCI_INDEX.to_owned())];
    if let Some(t) = &artifact_type {
        list.retain(|d| d.get("artifactType").and_then(|v| v.as_str()) == Some(t.as_str()));
        hdrs.push(("oci-filters-applied", "artifactType".to_owned()));
    }
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list })
        .to_string();
    Ok(with_headers(
        Response::builder().status(StatusCode::OK),
        &hdrs,
        Body::from(body),
    ))
}

async fn tag_history(api: &Api, name: &RepoName, tag: &str) -> Result<Response, OciError> {
    if !valid_tag(tag) {
        return Err(OciError::new(OciCode::ManifestInvalid).detail("invalid tag"));
    }
    let history = api
        .reg
        .tag_history(name, tag)
        .await?
        .ok_or_else(|| OciError::new(OciCode::ManifestUnknown))?;
    let versions: Vec<_> = history
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "digest": v.digest.as_ref().map(ToString::to_string),
                "deleted": v.digest.is_none(),
                "clock": v.stamp.clock,
                "replica": v.stamp.replica,
            })
        })
        .collect();
    let body = serde_json::json!({
        "name": name.as_str(),
        "tag": tag,
        "current": history.current_digest().map(ToString::to_string),
        "versions": versions,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

// === responses ===

fn with_headers(
    mut b: http::response::Builder,
    hdrs: &[(&'static str, String)],
    body: Body,
) -> Response {
    for (k, v) in hdrs {
        if let Ok(v) = HeaderValue::from_str(v) {
            b = b.header(*k, v);
        }
    }
    b.body(body)
        .unwrap_or_else(|e| OciError::internal(e).into_response())
}

fn empty(status: StatusCode, hdrs: &[(&'static str, String)]) -> Response {
    let mut all = hdrs.to_vec();
    all.push(("content-length", "0".to_owned()));
    with_headers(Response::builder().status(status), &all, Body::empty())
}

fn json_response(status: StatusCode, body: String) -> Response {
    with_headers(
        Response::builder().status(status),
        &[("content-type", "application/json".to_owned())],
        Body::from(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(parse_route("/v2/"), Ok(Route::Base)));
        assert!(
            matches!(parse_route("/v2/a/b/blobs/uploads/"), Ok(Route::UploadStart(n)) if n.as_str() == "a/b")
        );
        assert!(
            matches!(parse_route("/v2/a/blobs/uploads/abc"), Ok(Route::Upload(_, id)) if id == "abc")
        );
        assert!(
            matches!(parse_route("/v2/a/blobs/sha256%3Aab"), Ok(Route::Blob(_, d)) if d == "sha256:ab")
        );
        assert!(matches!(
            parse_route("/v2/a/manifests/v1"),
            Ok(Route::Manifest(..))
        ));
        assert!(matches!(
            parse_route("/v2/a/tags/list"),
            Ok(Route::Tags(..))
        ));
        assert!(
            matches!(parse_route("/v2/a/tags/v1/history"), Ok(Route::TagHistory(_, t)) if t == "v1")
        );
        assert!(matches!(
            parse_route("/v2/a/referrers/x"),
            Ok(Route::Referrers(..))
        ));
        assert_eq!(
            parse_route("/v2/../x/manifests/v1").unwrap_err().code(),
            OciCode::NameInvalid
        );
        assert_eq!(
            parse_route("/v2/a/nothing").unwrap_err().code(),
            OciCode::NameUnknown
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Ok(Some((0, 3))));
        assert_eq!(parse_range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-4", 10), Ok(Some((6, 9))));
        assert_eq!(parse_range("bytes=8-100", 10), Ok(Some((8, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
    }
}
