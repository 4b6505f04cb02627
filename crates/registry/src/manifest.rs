//! Manifest validation: which media type a pushed manifest is, which blobs and
//! manifests it references (checked before it is accepted), and its `subject` for the
//! referrers API. The bytes themselves are stored verbatim; this only reads them.

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
    fn mismatched_content_type_and_garbage_are_invalid() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
        assert!(parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).is_err());
        assert!(parse(b"{", None).is_err());
        assert!(parse(b"{\"schemaVersion\":1}", None).is_err());
        let p = parse(m.to_string().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert!(p.manifests.is_empty());
    }
}
