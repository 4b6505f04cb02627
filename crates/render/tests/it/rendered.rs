//! Rendering the topologies the tests use, and reading the results back as data.

use geoha_render::{render, RenderOptions, RenderedTree};
use geoha_topology::Topology;
use serde_json::Value;

/// A digest that is not the placeholder, to see that it reaches every manifest.
pub(crate) const TEST_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Three regions with different priorities, weights and zones; one without a role;
/// the registry in two of them.
pub(crate) const THREE_REGIONS: &str = r#"
environment = "prod"
resource_group = "rg-shop"

[image]
name = "team/shop-api"
version = "2.3.4"

[frontdoor]
name = "fd-shop"
origin_response_timeout = "60s"
session_affinity = true

[frontdoor.probe]
path = "/readyz"
method = "GET"
interval = "30s"
sample_size = 5
successful_samples_required = 3
additional_latency_ms = 0

[registry]
name = "shopacr"
replicas = ["westeurope", "northeurope"]

[[region]]
name = "westeurope"
role = "green"
zones = ["1", "2", "3"]
replicas_per_zone = 2
priority = 1
weight = 700

[[region]]
name = "northeurope"
role = "blue"
zones = ["1", "2"]
priority = 1
weight = 300
cluster = "aks-ne"

[[region]]
name = "uksouth"
zones = ["3"]
priority = 2
weight = 1000
"#;

pub(crate) fn three_regions() -> Topology {
    Topology::from_toml_str(THREE_REGIONS, "three-regions.toml").expect("valid topology")
}

pub(crate) fn render_default() -> RenderedTree {
    render(&Topology::builtin_default(), &RenderOptions::default()).expect("renders")
}

pub(crate) fn render_with_digest(t: &Topology) -> RenderedTree {
    let opts = RenderOptions {
        image_digest: Some(TEST_DIGEST.into()),
    };
    render(t, &opts).expect("renders")
}

/// Every topology the rule tests run over.
pub(crate) fn all_renderings() -> Vec<(Topology, RenderedTree)> {
    let mut out = Vec::new();
    for t in [
        Topology::builtin_default(),
        Topology::azure_reference(),
        three_regions(),
    ] {
        let tree = render_with_digest(&t);
        out.push((t, tree));
    }
    out
}

/// One YAML file of the tree as JSON-like data.
pub(crate) fn yaml(tree: &RenderedTree, path: &str) -> Value {
    let text = tree
        .get(path)
        .unwrap_or_else(|| panic!("{path} not rendered"));
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of a multi-document YAML stream.
pub(crate) fn yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `value[a][b]...` by a dotted path (numbers index arrays); panics naming the path.
pub(crate) fn at<'v>(value: &'v Value, path: &str) -> &'v Value {
    let mut cur = value;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[part],
        };
        assert!(!cur.is_null(), "{path}: missing at {part:?} in {value}");
    }
    cur
}

pub(crate) fn str_at<'v>(value: &'v Value, path: &str) -> &'v str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

pub(crate) fn u64_at(value: &Value, path: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

/// An env var's value in a container object.
pub(crate) fn env_value<'v>(container: &'v Value, name: &str) -> Option<&'v Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}
