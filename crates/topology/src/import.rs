//! `geoha import variables.json`: the reference's configuration file to a topology.
//!
//! The reference keys its settings by environment: `{"env": "dev", "dev": {...}}` with
//! `resourceGroup`, `containerRegistryName`, `location_green`, `location_blue`,
//! `aksClusterName_green`, `aksClusterName_blue`, `frontDoor`,
//! `microserviceApiImageName`. Keys geoha has no use for are reported, not dropped
//! silently.

use serde_json::Value;

use crate::{RegionSpec, Topology, TopologyError};

/// Keys of the environment object that the conversion understands.
const KNOWN: &[&str] = &[
    "resourceGroup",
    "containerRegistryName",
    "location_green",
    "location_blue",
    "aksClusterName_green",
    "aksClusterName_blue",
    "frontDoor",
    "microserviceApiImageName",
];

/// The converted topology and notes for the user (keys that were not used).
#[derive(Debug, Clone)]
pub struct Imported {
    /// The topology (validated), with the reference's Front Door settings.
    pub topology: Topology,
    /// Human-readable notes, e.g. unused keys.
    pub notes: Vec<String>,
}

/// Converts the text of a `variables.json`; `file` names it in errors.
pub fn from_variables_json(text: &str, file: &str) -> Result<Imported, TopologyError> {
    let fail = |message: String| TopologyError::Import {
        file: file.to_string(),
        message,
    };
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| fail(format!("{}:{}: not JSON: {e}", e.line(), e.column())))?;
    let env = doc
        .get("env")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("missing string key \"env\" (the environment to import)".into()))?;
    let vars = doc
        .get(env)
        .and_then(Value::as_object)
        .ok_or_else(|| fail(format!("\"env\" is {env:?} but there is no object {env:?}")))?;
    let get = |key: &str| -> Result<Option<String>, TopologyError> {
        match vars.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(fail(format!("{env}.{key}: expected a string, got {other}"))),
        }
    };
    let mut notes = Vec::new();
    for key in vars.keys() {
        if !KNOWN.contains(&key.as_str()) {
            notes.push(format!("{env}.{key}: not used by geoha (ignored)"));
        }
    }

    let mut topology = Topology::azure_reference();
    topology.environment = env.to_lowercase();
    topology.resource_group = get("resourceGroup")?;
    topology.registry.name = get("containerRegistryName")?;
    topology.frontdoor.name = get("frontDoor")?;
    if let Some(image) = get("microserviceApiImageName")? {
        topology.image.name = image.to_lowercase();
    }
    let template = topology
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| RegionSpec {
            name: String::new(),
            role: String::new(),
            zones: vec!["1".into(), "2".into(), "3".into()],
            replicas_per_zone: 1,
            priority: 1,
            weight: 50,
            cluster: None,
        });
    let mut regions = Vec::new();
    for role in ["green", "blue"] {
        let Some(location) = get(&format!("location_{role}"))? else {
            notes.push(format!("{env}.location_{role}: absent, no {role} region"));
            continue;
        };
        regions.push(RegionSpec {
            name: location.to_lowercase().replace(' ', ""),
            role: role.into(),
            cluster: get(&format!("aksClusterName_{role}"))?,
            ..template.clone()
        });
    }
    if regions.is_empty() {
        return Err(fail(format!(
            "{env}: neither location_green nor location_blue is set"
        )));
    }
    topology.registry.replicas = regions.iter().map(|r| r.name.clone()).collect();
    topology.regions = regions;
    topology
        .validate()
        .map_err(|e| fail(format!("the converted topology is invalid:\n{e}")))?;
    Ok(Imported { topology, notes })
}
