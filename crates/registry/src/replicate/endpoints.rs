//! The peer-only endpoints under `/_geoha/v1/` (and the public status): what the
//! senders, read-through and anti-entropy of other replicas call.

use super::*;

/// State of the internal endpoints.
#[derive(Debug, Clone)]
pub(crate) struct PeerApi {
    pub(crate) reg: Arc<Registry>,
    pub(crate) rep: Arc<Replication>,
}

fn forbidden() -> OciError {
    OciError::new(OciCode::Denied).detail("bad or missing replication secret")
}

/// `POST /_geoha/v1/changes`: merges a batch from a peer.
pub(crate) async fn receive_changes(
    State(api): State<PeerApi>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OciError> {
    if !api.rep.secret_ok(&headers) {
        return Err(forbidden());
    }
    let batch: ChangeBatch = serde_json::from_slice(&body).map_err(|e| {
        OciError::new(OciCode::Unsupported)
            .status(StatusCode::BAD_REQUEST)
            .detail(e.to_string())
    })?;
    for c in &batch.changes {
        match c {
            Change::Link { state, .. } => {
                api.reg.clock.observe(state.added.clock);
                if let Some(d) = &state.deleted {
                    api.reg.clock.observe(d.clock);
                }
            }
            Change::Tag { version, .. } => api.reg.clock.observe(version.stamp.clock),
        }
    }
    let n = batch.changes.len();
    api.reg
        .store
        .blocking(move |s| {
            for c in &batch.changes {
                apply(s, c)?;
            }
            Ok(())
        })
        .await?;
    tracing::debug!(origin = %batch.origin, n, "applied changes from a peer");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `HEAD /_geoha/v1/blobs/<digest>` and `PUT` (content only; links come as changes).
pub(crate) async fn peer_blob(
    State(api): State<PeerApi>,
    method: Method,
    axum::extract::Path(digest): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    if !api.rep.secret_ok(&headers) {
        return Err(forbidden());
    }
    let digest: Digest = digest.parse()?;
    if method == Method::HEAD {
        let d = digest.clone();
        let size = api.reg.store.blocking(move |s| Ok(s.blob_size(&d))).await?;
        return Ok(match size {
            Some(_) => StatusCode::OK.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        });
    }
    if method == Method::GET {
        let file = tokio::fs::File::open(api.reg.store.blob_path(&digest))
            .await
            .map_err(|_| OciError::new(OciCode::BlobUnknown))?;
        let len = file.metadata().await.map_err(OciError::internal)?.len();
        let mut resp = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ))
        .into_response();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, len.into());
        return Ok(resp);
    }
    if method != Method::PUT {
        return Err(OciError::new(OciCode::Unsupported));
    }
    let tmp = api.reg.store.tmp_path();
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(OciError::internal)?;
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| OciError::new(OciCode::BlobUploadInvalid).detail(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).await.map_err(OciError::internal)?;
            }
        }
        // Written, not yet synced: `commit_blob_file` syncs it.
        file.flush().await.map_err(OciError::internal)?;
        if hasher.finish() != digest {
            return Err(OciError::new(OciCode::DigestInvalid));
        }
        let (t2, d2) = (tmp.clone(), digest.clone());
        api.reg
            .store
            .blocking(move |s| {
                if s.blob_size(&d2).is_none() {
                    s.commit_blob_file(&t2, &d2)
                } else {
                    Ok(())
                }
            })
            .await?;
        Ok(StatusCode::CREATED.into_response())
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result
}

#[derive(Debug, Deserialize)]
pub(crate) struct BlobQuery {
    repo: String,
    digest: String,
}

/// `GET /_geoha/v1/blob?repo=&digest=`: a blob of a repository, local only (no
/// read-through, so peers never ask each other in circles).
pub(crate) async fn peer_fetch_blob(
    State(api): State<PeerApi>,
    headers: HeaderMap,
    Query(q): Query<BlobQuery>,
) -> Result<Response, OciError> {
    if !api.rep.secret_ok(&headers) {
        return Err(forbidden());
    }
    let repo = RepoName::parse(&q.repo).ok_or_else(|| OciError::new(OciCode::NameInvalid))?;
    let digest: Digest = q.digest.parse()?;
    let link = api
        .reg
        .blob_link(&repo, &digest)
        .await?
        .ok_or_else(|| OciError::new(OciCode::BlobUnknown))?;
    let file = tokio::fs::File::open(api.reg.store.blob_path(&digest))
        .await
        .map_err(|_| OciError::new(OciCode::BlobUnknown))?;
    let len = file.metadata().await.map_err(OciError::internal)?.len();
    let mut resp = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ))
    .into_response();
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_LENGTH, len.into());
    insert_json(h, LINK_HEADER, &link);
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ManifestQuery {
    repo: String,
    reference: String,
}

/// `GET /_geoha/v1/manifest?repo=&reference=`: a manifest with its link and, for a
/// tag, the winning tag version; local only.
pub(crate) async fn peer_fetch_manifest(
    State(api): State<PeerApi>,
    headers: HeaderMap,
    Query(q): Query<ManifestQuery>,
) -> Result<Response, OciError> {
    if !api.rep.secret_ok(&headers) {
        return Err(forbidden());
    }
    let repo = RepoName::parse(&q.repo).ok_or_else(|| OciError::new(OciCode::NameInvalid))?;
    let reference = crate::api::parse_reference(&q.reference)?;
    let found = api
        .reg
        .find_manifest(&repo, &reference)
        .await?
        .ok_or_else(|| OciError::new(OciCode::ManifestUnknown))?;
    let bytes = tokio::fs::read(api.reg.store.blob_path(&found.digest))
        .await
        .map_err(OciError::internal)?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = found.digest.to_string().parse() {
        h.insert("docker-content-digest", v);
    }
    insert_json(h, LINK_HEADER, &found.link);
    if let Reference::Tag(tag) = &reference {
        if let Some(history) = api.reg.tag_history(&repo, tag).await? {
            if let Some(v) = TagHistory::current(&history) {
                insert_json(h, TAG_HEADER, v);
            }
        }
    }
    Ok(resp)
}

/// `GET /_geoha/v1/snapshot`: every link and tag version here, as changes (for a
/// peer's anti-entropy pass).
pub(crate) async fn snapshot(
    State(api): State<PeerApi>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    if !api.rep.secret_ok(&headers) {
        return Err(forbidden());
    }
    let changes = api.reg.store.blocking(|s| s.snapshot()).await?;
    let body = ChangeBatch {
        origin: api.reg.replica_id.clone(),
        changes,
    };
    Ok(axum::Json(body).into_response())
}

/// `GET /_geoha/v1/replication`: this replica's replication status.
pub(crate) async fn status(State(api): State<PeerApi>) -> Response {
    let body = serde_json::json!({
        "replica": api.reg.replica_id,
        "log_head": api.reg.log.head(),
        "peers": api.rep.status(&api.reg),
    });
    axum::Json(body).into_response()
}
