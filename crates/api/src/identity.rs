//! Who answers a request: the replica's identity and the `/default/` body built from it.
//!
//! The body is rendered once and re-rendered only when the public IP changes, so a
//! request costs one reference-count increment instead of a JSON serialization.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

/// The value of `ip` while the public IP is unknown, as in the reference service.
pub const UNKNOWN_IP: &str = "Error";

/// Labels that identify a replica; they never change while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaIdentity {
    /// The OS hostname (the pod name on Kubernetes).
    pub hostname: String,
    /// Region label, e.g. `eastus2`.
    pub region: String,
    /// Zone label within the region, e.g. `1`.
    pub zone: String,
    /// Replica name, e.g. `eastus2-z1-r0`; defaults to the hostname.
    pub replica: String,
    /// Version of the service being run (build version unless overridden).
    pub version: String,
}

impl ReplicaIdentity {
    /// The OS hostname, or `unknown` when it cannot be read as UTF-8.
    pub fn os_hostname() -> String {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

/// The JSON answer of `GET /default/`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct IdentityCard {
    /// OS hostname of the replica (the pod name on Kubernetes).
    #[schema(example = "api-7d9f8-abcde")]
    pub hostname: String,
    /// Public IP of the replica, or the string `Error` while it is unknown.
    #[schema(example = "20.1.2.3")]
    pub ip: String,
    /// Region that answered.
    #[schema(example = "eastus2")]
    pub region: String,
    /// Zone that answered.
    #[schema(example = "1")]
    pub zone: String,
    /// Replica that answered.
    #[schema(example = "eastus2-z1-r0")]
    pub replica: String,
    /// Version of the service.
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// The pre-rendered `/default/` body, swapped atomically when the IP changes.
#[derive(Debug)]
pub struct CardCache {
    identity: ReplicaIdentity,
    body: ArcSwap<Bytes>,
}

impl CardCache {
    /// A cache whose IP is still unknown.
    pub fn new(identity: ReplicaIdentity) -> Self {
        let body = render(&identity, UNKNOWN_IP);
        CardCache {
            identity,
            body: ArcSwap::from_pointee(body),
        }
    }

    /// The current body (cheap: a reference-counted clone).
    pub fn body(&self) -> Bytes {
        Bytes::clone(&self.body.load())
    }

    /// The identity labels.
    pub fn identity(&self) -> &ReplicaIdentity {
        &self.identity
    }

    /// Records a new public IP (or `None` when the lookup failed and nothing is known).
    pub fn set_ip(&self, ip: Option<&str>) {
        let body = render(&self.identity, ip.unwrap_or(UNKNOWN_IP));
        self.body.store(Arc::new(body));
    }
}

fn render(identity: &ReplicaIdentity, ip: &str) -> Bytes {
    let card = IdentityCard {
        hostname: identity.hostname.clone(),
        ip: ip.to_string(),
        region: identity.region.clone(),
        zone: identity.zone.clone(),
        replica: identity.replica.clone(),
        version: identity.version.clone(),
    };
    // Serializing a struct of strings cannot fail.
    Bytes::from(serde_json::to_vec(&card).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ReplicaIdentity {
        ReplicaIdentity {
            hostname: "h".into(),
            region: "eastus2".into(),
            zone: "1".into(),
            replica: "eastus2-z1-r0".into(),
            version: "1.2.3".into(),
        }
    }

    #[test]
    fn unknown_ip_reads_error_like_the_reference() {
        let cache = CardCache::new(identity());
        let card: IdentityCard = serde_json::from_slice(&cache.body()).unwrap();
        assert_eq!(card.ip, "Error");
        assert_eq!(card.region, "eastus2");
    }

    #[test]
    fn set_ip_rerenders_and_none_falls_back_to_error() {
        let cache = CardCache::new(identity());
        cache.set_ip(Some("20.1.2.3"));
        let card: IdentityCard = serde_json::from_slice(&cache.body()).unwrap();
        assert_eq!(card.ip, "20.1.2.3");
        cache.set_ip(None);
        let card: IdentityCard = serde_json::from_slice(&cache.body()).unwrap();
        assert_eq!(card.ip, "Error");
    }
}
