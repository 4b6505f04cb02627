//! Manifest validation: which media type a pushed manifest is, which blobs and
//! manifests it references (checked before it is accepted), and its `subject` for the
//! referrers API; and, on pull, what to answer a client whose `Accept` header does not
//! admit the stored type ([`negotiate`]). The bytes themselves are stored verbatim;
//! this only reads them.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{OciCode, OciError};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the registry needs to know about a manifest.
#[derive(Debug, Clone)]
pub(crate) struct ParsedManifest {
    pub(crate) media_type: String,
    /// Blobs (config and layers) that must be in the repository.
    pub(crate) blobs: Vec<Digest>,
    /// Child manifests (of an index) that must be in the repository.
    pub(crate) manifests: Vec<Digest>,
    pub(crate) subject: Option<Digest>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: Option<Value>,
}

fn invalid(detail: impl Into<String>) -> OciError {
    OciError::new(OciCode::ManifestInvalid).detail(detail)
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parses a manifest body against the `Content-Type` it was pushed with.
pub(crate) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, OciError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let header = content_type.map(essence).filter(|c| !c.is_empty());
    let media_type = match (declared, header) {
        (Some(d), Some(h)) if d != h => {
            return Err(invalid(format!(
                "mediaType {d} does not match Content-Type {h}"
            )))
        }
        (Some(d), _) => d.to_owned(),
        (None, Some(h)) if h != "application/json" && h != "application/octet-stream" => {
            h.to_owned()
        }
        (None, _) if obj.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, _) => OCI_MANIFEST.to_owned(),
    };
    let descriptor_digest = |v: &Value, what: &str| -> Result<Digest, OciError> {
        let s = v
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{what} has no digest")))?;
        s.parse::<Digest>()
            .map_err(|e| invalid(format!("{what}: {e}")))
    };
    let mut parsed = ParsedManifest {
        media_type: media_type.clone(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        annotations: obj.get("annotations").cloned(),
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = obj.get("config").ok_or_else(|| invalid("missing config"))?;
            parsed.blobs.push(descriptor_digest(config, "config")?);
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let layers = obj
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("missing layers"))?;
            for layer in layers {
                let d = descriptor_digest(layer, "layer")?;
                // Foreign layers (with `urls`) live elsewhere by design.
                if layer.get("urls").is_none() {
                    parsed.blobs.push(d);
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let manifests = obj
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("missing manifests"))?;
            for m in manifests {
                parsed.manifests.push(descriptor_digest(m, "manifests[]")?);
            }
        }
        other => {
            return Err(invalid(format!("unsupported manifest media type {other}")));
        }
    }
    if let Some(subject) = obj.get("subject") {
        parsed.subject = Some(descriptor_digest(subject, "subject")?);
    }
    Ok(parsed)
}

/// The manifest media types a request's `Accept` header admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// No `Accept` header (or an empty one), `*/*` or `application/*`.
    Any,
    /// Exactly these media types (lowercase, without parameters).
    Only(Vec<String>),
}

impl Accepted {
    /// Reads every `Accept` header value (each a comma-separated list). Parameters are
    /// ignored, as distribution does, except `q=0`, which HTTP defines as "not
    /// acceptable".
    pub(crate) fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Accepted {
        let mut types = Vec::new();
        let mut any_listed = false;
        for value in values {
            for item in value.split(',') {
                let mut parts = item.split(';');
                let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if essence.is_empty() {
                    continue;
                }
                any_listed = true;
                let refused = parts.any(|p| {
                    let p = p.trim();
                    p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                        && p[2..].trim().parse::<f32>() == Ok(0.0)
                });
                if refused {
                    continue;
                }
                if essence == "*/*" || essence == "application/*" {
                    return Accepted::Any;
                }
                types.push(essence);
            }
        }
        if any_listed {
            Accepted::Only(types)
        } else {
            Accepted::Any
        }
    }

    pub(crate) fn admits(&self, media_type: &str) -> bool {
        match self {
            Accepted::Any => true,
            Accepted::Only(types) => types.iter().any(|t| t.eq_ignore_ascii_case(media_type)),
        }
    }
}

/// What to send for a stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// The stored manifest, as it is.
    AsStored,
    /// Instead of a Docker manifest list the client cannot take, its linux/amd64 image
    /// manifest (which [`check_platform_image`] must then pass).
    PlatformImage(Digest),
}

/// The platform distribution picks from a manifest list for a client without list
/// support.
const DEFAULT_OS: &str = "linux";
const DEFAULT_ARCHITECTURE: &str = "amd64";

/// Decides what to answer for a stored manifest whose type the client may not accept,
/// as distribution's `GetManifest` (registry/handlers/manifests.go) does, schema 1
/// aside: an OCI manifest or index the client does not accept is MANIFEST_UNKNOWN with
/// distribution's message; a Docker manifest list asked for by tag becomes its
/// linux/amd64 image; anything else is sent as stored (a Docker image manifest, which
/// distribution no longer rewrites; a list asked for by digest, which nothing else may
/// answer).
pub(crate) fn negotiate(
    media_type: &str,
    bytes: &[u8],
    accepted: &Accepted,
    by_tag: bool,
) -> Result<Negotiated, OciError> {
    if accepted.admits(media_type) {
        return Ok(Negotiated::AsStored);
    }
    match media_type {
        OCI_MANIFEST => Err(OciError::new(OciCode::ManifestUnknown)
            .message("OCI manifest found, but accept header does not support OCI manifests")),
        OCI_INDEX => Err(OciError::new(OciCode::ManifestUnknown)
            .message("OCI index found, but accept header does not support OCI indexes")),
        DOCKER_LIST if by_tag => platform_image(bytes)
            .map(Negotiated::PlatformImage)
            .ok_or_else(|| {
                OciError::new(OciCode::ManifestUnknown).detail(format!(
                    "the manifest list has no {DEFAULT_OS}/{DEFAULT_ARCHITECTURE} image, \
                     and the accept header does not support manifest lists"
                ))
            }),
        _ => Ok(Negotiated::AsStored),
    }
}

/// Whether the client takes the image manifest picked from a list for it.
pub(crate) fn check_platform_image(media_type: &str, accepted: &Accepted) -> Result<(), OciError> {
    if accepted.admits(media_type) {
        return Ok(());
    }
    match media_type {
        // distribution's words and code for this case.
        DOCKER_MANIFEST => Err(OciError::new(OciCode::ManifestInvalid)
            .message("Schema 2 manifest not supported by client")),
        _ => Err(OciError::new(OciCode::ManifestUnknown)
            .message("OCI manifest found, but accept header does not support OCI manifests")),
    }
}

/// The digest of a list's first linux/amd64 entry.
fn platform_image(list: &[u8]) -> Option<Digest> {
    let doc: Value = serde_json::from_slice(list).ok()?;
    doc.get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            let platform = m.get("platform");
            let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(Value::as_str);
            field("os") == Some(DEFAULT_OS) && field("architecture") == Some(DEFAULT_ARCHITECTURE)
        })?
        .get("digest")?
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::sha256(s.as_bytes()).to_string()
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1},
            "layers": [{"mediaType": "x", "digest": d("l"), "size": 1},
                       {"mediaType": "x", "digest": d("f"), "size": 1, "urls": ["http://x"]}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 1}
        });
        let p = parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.subject.unwrap().to_string(), d("s"));
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn accept_headers() {
        assert_eq!(Accepted::parse([]), Accepted::Any);
        assert_eq!(Accepted::parse([""]), Accepted::Any);
        assert_eq!(Accepted::parse(["text/html, */*;q=0.8"]), Accepted::Any);
        assert_eq!(Accepted::parse(["application/*"]), Accepted::Any);
        let a = Accepted::parse([
            "application/vnd.docker.distribution.manifest.v2+json; q=0.9,  application/json",
            "Application/VND.OCI.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json;q=0",
        ]);
        assert!(a.admits(DOCKER_MANIFEST));
        assert!(a.admits(OCI_MANIFEST));
        assert!(!a.admits(OCI_INDEX), "q=0 refuses");
        assert!(!a.admits(DOCKER_LIST));
        assert!(!Accepted::parse(["*/*;q=0"]).admits(OCI_MANIFEST));
    }

    #[test]
    fn negotiation_follows_distribution() {
        let docker_only = Accepted::parse([DOCKER_MANIFEST]);
        let list = |platforms: &[(&str, &str, &str)]| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": DOCKER_LIST,
                "manifests": platforms.iter().map(|(os, arch, seed)| serde_json::json!({
                    "mediaType": DOCKER_MANIFEST, "digest": d(seed), "size": 1,
                    "platform": {"os": os, "architecture": arch}
                })).collect::<Vec<_>>()
            }))
            .unwrap()
        };
        let multi = list(&[("linux", "arm64", "arm"), ("linux", "amd64", "amd")]);
        let code = |r: Result<Negotiated, OciError>| r.unwrap_err().code();
        assert_eq!(
            code(negotiate(OCI_MANIFEST, b"{}", &docker_only, true)),
            OciCode::ManifestUnknown
        );
        assert_eq!(
            code(negotiate(OCI_INDEX, b"{}", &docker_only, false)),
            OciCode::ManifestUnknown
        );
        assert_eq!(
            negotiate(DOCKER_LIST, &multi, &docker_only, true).unwrap(),
            Negotiated::PlatformImage(d("amd").parse().unwrap())
        );
        // By digest nothing but the list itself matches.
        assert_eq!(
            negotiate(DOCKER_LIST, &multi, &docker_only, false).unwrap(),
            Negotiated::AsStored
        );
        let arm_only = list(&[("linux", "arm64", "arm")]);
        assert_eq!(
            code(negotiate(DOCKER_LIST, &arm_only, &docker_only, true)),
            OciCode::ManifestUnknown
        );
        let oci_only = Accepted::parse([OCI_MANIFEST]);
        assert_eq!(
            negotiate(DOCKER_MANIFEST, b"{}", &oci_only, true).unwrap(),
            Negotiated::AsStored
        );
        assert_eq!(
            check_platform_image(DOCKER_MANIFEST, &oci_only)
                .unwrap_err()
                .code(),
            OciCode::ManifestInvalid
        );
        assert!(check_platform_image(DOCKER_MANIFEST, &docker_only).is_ok());
        for accepted in [Accepted::Any, Accepted::parse([OCI_INDEX, OCI_MANIFEST])] {
            for t in [OCI_MANIFEST, OCI_INDEX] {
                assert_eq!(
                    negotiate(t, b"{}", &accepted, true).unwrap(),
                    Negotiated::AsStored
                );
            }
        }
    }

    #[test]
    fn mismatched_content_type_and_garbage_are_invalid() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
        assert!(parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).is_err());
        assert!(parse(b"{", None).is_err());
        assert!(parse(b"{\"schemaVersion\":1}", None).is_err());
        let p = parse(m.to_string().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert!(p.manifests.is_empty());
    }
}
