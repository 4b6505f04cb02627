//! Value rules the types cannot express. Each problem is `(dotted key, message)`; the
//! caller places it in the file.

use std::collections::HashSet;
use std::time::Duration;

use crate::Topology;

/// The address scheme `127.<region>.<zone>.<n>` has 254 usable values per octet.
const MAX_PER_OCTET: usize = 254;

/// A DNS-label-like name: what Azure locations, Kubernetes labels and our replica names
/// all accept.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn problems(t: &Topology) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |key: String, msg: String| out.push((key, msg));

    if !is_label(&t.environment) {
        bad(
            "environment".into(),
            format!(
                "{:?} must be 1-63 lowercase letters, digits or '-'",
                t.environment
            ),
        );
    }
    if let Some(rg) = &t.resource_group {
        if rg.is_empty() || rg.len() > 90 {
            bad("resource_group".into(), "must be 1-90 characters".into());
        }
    }

    // Image.
    let image_ok = !t.image.name.is_empty()
        && t.image.name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/')
        });
    if !image_ok {
        bad(
            "image.name".into(),
            format!(
                "{:?} is not a repository name (lowercase letters, digits, '-', '_', '.', '/')",
                t.image.name
            ),
        );
    }
    let tag_ok = !t.image.version.is_empty()
        && t.image.version.len() <= 128
        && t.image
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !tag_ok {
        bad(
            "image.version".into(),
            format!("{:?} is not a valid image tag", t.image.version),
        );
    }

    // Front door.
    let fd = &t.frontdoor;
    if fd.origin_response_timeout < Duration::from_millis(100)
        || fd.origin_response_timeout > Duration::from_secs(240)
    {
        bad(
            "frontdoor.origin_response_timeout".into(),
            "must be between 100ms and 240s (Front Door allows 16-240 s)".into(),
        );
    }
    let p = &fd.probe;
    if !p.path.starts_with('/') || p.path.contains(char::is_whitespace) {
        bad(
            "frontdoor.probe.path".into(),
            format!("{:?} must start with '/' and contain no spaces", p.path),
        );
    }
    if p.interval < Duration::from_millis(100) || p.interval > Duration::from_secs(255) {
        bad(
            "frontdoor.probe.interval".into(),
            "must be between 100ms and 255s".into(),
        );
    }
    if !(1..=255).contains(&p.sample_size) {
        bad(
            "frontdoor.probe.sample_size".into(),
            format!("must be 1..=255, got {}", p.sample_size),
        );
    }
    if p.successful_samples_required == 0 || p.successful_samples_required > p.sample_size {
        bad(
            "frontdoor.probe.successful_samples_required".into(),
            format!(
                "must be 1..=sample_size ({}), got {}",
                p.sample_size, p.successful_samples_required
            ),
        );
    }
    if p.additional_latency_ms > 10_000 {
        bad(
            "frontdoor.probe.additional_latency_ms".into(),
            "must be at most 10000".into(),
        );
    }

    // Regions.
    if t.regions.is_empty() {
        bad(
            "region".into(),
            "at least one [[region]] is required".into(),
        );
    }
    if t.regions.len() > MAX_PER_OCTET {
        bad("region".into(), format!("at most {MAX_PER_OCTET} regions"));
    }
    let mut names = HashSet::new();
    for (i, r) in t.regions.iter().enumerate() {
        let at = |k: &str| format!("region[{i}].{k}");
        if !is_label(&r.name) {
            bad(
                at("name"),
                format!("{:?} must be lowercase letters, digits or '-'", r.name),
            );
        } else if !names.insert(r.name.as_str()) {
            bad(at("name"), format!("region {:?} appears twice", r.name));
        }
        if !r.role.is_empty() && !is_label(&r.role) {
            bad(
                at("role"),
                format!("{:?} must be lowercase letters, digits or '-'", r.role),
            );
        }
        if r.zones.is_empty() {
            bad(at("zones"), "at least one zone is required".into());
        }
        if r.zones.len() > MAX_PER_OCTET {
            bad(at("zones"), format!("at most {MAX_PER_OCTET} zones"));
        }
        let mut zones = HashSet::new();
        for (z, zone) in r.zones.iter().enumerate() {
            if !is_label(zone) {
                bad(
                    format!("region[{i}].zones[{z}]"),
                    format!("{zone:?} must be lowercase letters, digits or '-'"),
                );
            } else if !zones.insert(zone.as_str()) {
                bad(
                    format!("region[{i}].zones[{z}]"),
                    format!("zone {zone:?} appears twice"),
                );
            }
        }
        if r.replicas_per_zone == 0 || r.replicas_per_zone as usize > MAX_PER_OCTET {
            bad(
                at("replicas_per_zone"),
                format!("must be 1..={MAX_PER_OCTET}, got {}", r.replicas_per_zone),
            );
        }
        if !(1..=5).contains(&r.priority) {
            bad(
                at("priority"),
                format!("must be 1..=5 (lower first), got {}", r.priority),
            );
        }
        if !(1..=1000).contains(&r.weight) {
            bad(at("weight"), format!("must be 1..=1000, got {}", r.weight));
        }
        if let Some(c) = &r.cluster {
            if c.is_empty() || c.len() > 63 {
                bad(at("cluster"), "must be 1-63 characters".into());
            }
        }
    }

    // Registry.
    let mut seen = HashSet::new();
    for (i, name) in t.registry.replicas.iter().enumerate() {
        let key = format!("registry.replicas[{i}]");
        if !t.regions.iter().any(|r| &r.name == name) {
            bad(key, format!("{name:?} is not a region of this topology"));
        } else if !seen.insert(name) {
            bad(key, format!("{name:?} appears twice"));
        }
    }
    if let Some(n) = &t.registry.name {
        if !(5..=50).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
            bad(
                "registry.name".into(),
                format!("{n:?} must be 5-50 letters or digits (Azure's rule)"),
            );
        }
    }
    out
}
