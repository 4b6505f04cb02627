//! The Bicep files are wired consistently (every parameter given is declared and every
//! declared one is given, module outputs and object fields exist), and the values in
//! `main.parameters.json` are the topology's.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::rendered::{all_renderings, at, render_default, str_at, u64_at};

fn text<'t>(tree: &'t geoha_render::RenderedTree, path: &str) -> &'t str {
    tree.get(path)
        .unwrap_or_else(|| panic!("{path} not rendered"))
}

/// Names declared by `keyword NAME ...` at the start of a line.
fn declared(bicep: &str, keyword: &str) -> BTreeSet<String> {
    bicep
        .lines()
        .filter_map(|l| l.strip_prefix(keyword)?.strip_prefix(' '))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The keys of the `params: { ... }` block of the module declared from `path`.
fn module_params(main: &str, path: &str) -> BTreeSet<String> {
    let start = main
        .find(&format!("'{path}'"))
        .unwrap_or_else(|| panic!("main.bicep does not use {path}"));
    let rest = &main[start..];
    let params = rest.find("  params: {").expect("params block") + "  params: {".len();
    let mut keys = BTreeSet::new();
    for line in rest[params..].lines().skip(1) {
        if line.trim_start() == "}" && line.starts_with("  }") {
            break;
        }
        let key = line.trim().split(':').next().unwrap_or("").to_string();
        keys.insert(key);
    }
    keys
}

/// Every `ident.field` used in the file for the given identifier.
fn fields_used(bicep: &str, ident: &str) -> BTreeSet<String> {
    let needle = format!("{ident}.");
    let code: String = bicep
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let bicep = code.as_str();
    let mut out = BTreeSet::new();
    for (i, _) in bicep.match_indices(&needle) {
        let before = bicep[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let field: String = bicep[i + needle.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        // An empty field is prose ("an origin."), not an expression.
        if !field.is_empty() {
            out.insert(field);
        }
    }
    out
}

fn keys(object: &Value) -> BTreeSet<String> {
    object
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_parameter_is_declared_given_and_used() {
    let tree = render_default();
    let main = text(&tree, "bicep/main.bicep");
    let params: Value =
        serde_json::from_str(text(&tree, "bicep/main.parameters.json")).expect("JSON");
    let given = keys(at(&params, "parameters"));
    assert_eq!(
        declared(main, "param"),
        given,
        "main.bicep vs main.parameters.json"
    );

    for module in ["registry", "aks", "frontdoor"] {
        let path = format!("modules/{module}.bicep");
        let body = text(&tree, &format!("bicep/{path}"));
        let declared_params = declared(body, "param");
        assert_eq!(
            module_params(main, &path),
            declared_params,
            "{path}: params passed by main.bicep vs declared"
        );
        for p in &declared_params {
            let uses = body.matches(p.as_str()).count();
            assert!(uses >= 2, "{path}: param {p} is never used");
        }
    }
    for p in &given {
        assert!(
            main.matches(p.as_str()).count() >= 2,
            "main.bicep: {p} unused"
        );
    }
}

#[test]
fn module_outputs_and_object_fields_referenced_exist() {
    let tree = render_default();
    let main = text(&tree, "bicep/main.bicep");
    for (symbol, module) in [
        ("registry", "registry"),
        ("frontDoor", "frontdoor"),
        ("aks[i]", "aks"),
    ] {
        let body = text(&tree, &format!("bicep/modules/{module}.bicep"));
        let outputs = declared(body, "output");
        for used in fields_used(main, &format!("{symbol}.outputs")) {
            assert!(outputs.contains(&used), "{module} has no output {used}");
        }
    }
    let params: Value =
        serde_json::from_str(text(&tree, "bicep/main.parameters.json")).expect("JSON");
    let cluster_fields = keys(at(&params, "parameters.clusters.value.0"));
    for used in fields_used(main, "cluster") {
        assert!(
            cluster_fields.contains(&used),
            "clusters[] has no field {used}"
        );
    }
    // The origins built in main.bicep carry what frontdoor.bicep reads.
    let origin_fields: BTreeSet<String> = ["name", "hostName", "priority", "weight"]
        .map(String::from)
        .into();
    let built = main.split("var origins").nth(1).expect("var origins");
    let built = &built[..built.find("}]").expect("end of origins")];
    for field in &origin_fields {
        assert!(
            built.contains(&format!("  {field}: ")),
            "origins lack {field}"
        );
    }
    let frontdoor = text(&tree, "bicep/modules/frontdoor.bicep");
    for used in fields_used(frontdoor, "origin") {
        assert!(
            origin_fields.contains(&used),
            "origins have no field {used}"
        );
    }
}

#[test]
fn the_parameters_carry_the_topology() {
    for (t, tree) in all_renderings() {
        let params: Value =
            serde_json::from_str(text(&tree, "bicep/main.parameters.json")).expect("JSON");
        let p = at(&params, "parameters");
        let v = |key: &str| at(p, &format!("{key}.value")).clone();
        assert_eq!(v("resourceGroupName"), t.resource_group().as_str());
        assert_eq!(v("containerRegistryName"), t.registry_name().as_str());
        assert_eq!(v("frontDoorName"), t.frontdoor_name().as_str());
        let homes: Vec<&str> = t
            .registry_regions()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(v("location"), homes[0]);
        assert_eq!(v("registryReplicaLocations"), serde_json::json!(homes[1..]));

        let probe = &t.frontdoor.probe;
        assert_eq!(v("probePath"), probe.path.as_str());
        assert_eq!(v("probeRequestType"), probe.method.as_str());
        assert_eq!(v("probeIntervalInSeconds"), probe.interval.as_secs());
        assert_eq!(v("sampleSize"), probe.sample_size);
        assert_eq!(
            v("successfulSamplesRequired"),
            probe.successful_samples_required
        );
        assert_eq!(
            v("additionalLatencyInMilliseconds"),
            probe.additional_latency_ms
        );
        assert_eq!(v("sessionAffinity"), t.frontdoor.session_affinity);
        assert_eq!(
            v("originResponseTimeoutSeconds"),
            t.frontdoor.origin_response_timeout.as_secs()
        );

        let clusters = v("clusters");
        let clusters = clusters.as_array().unwrap();
        assert_eq!(clusters.len(), t.regions.len(), "one cluster per region");
        for (c, r) in clusters.iter().zip(&t.regions) {
            assert_eq!(str_at(c, "location"), r.name);
            assert_eq!(str_at(c, "name"), r.cluster_name(&t.environment));
            assert_eq!(u64_at(c, "priority"), u64::from(r.priority));
            assert_eq!(u64_at(c, "weight"), u64::from(r.weight));
            assert_eq!(at(c, "zones"), &serde_json::json!(r.zones));
            assert!(u64_at(c, "nodeCount") >= r.zones.len() as u64);
            assert!(u64_at(c, "nodeCount") >= 3);
        }
    }
}

#[test]
fn the_resources_are_highly_available_and_credential_free() {
    let tree = render_default();
    let registry = text(&tree, "bicep/modules/registry.bicep");
    for must in [
        "name: 'Premium'",
        "adminUserEnabled: false",
        "zoneRedundancy: 'Enabled'",
        "registries/replications@",
        "[for replicaLocation in replicaLocations:",
    ] {
        assert!(registry.contains(must), "registry.bicep lacks {must:?}");
    }
    let aks = text(&tree, "bicep/modules/aks.bicep");
    for must in [
        "availabilityZones: zones",
        "type: 'SystemAssigned'",
        "kubeletidentity.objectId",
        // The built-in AcrPull role.
        "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "scope: registry",
    ] {
        assert!(aks.contains(must), "aks.bicep lacks {must:?}");
    }
    let fd = text(&tree, "bicep/modules/frontdoor.bicep");
    for must in [
        "Standard_AzureFrontDoor",
        "'/*'",
        "probeRequestType: probeRequestType",
        "priority: origin.priority",
        "weight: origin.weight",
        "[for origin in origins:",
    ] {
        assert!(fd.contains(must), "frontdoor.bicep lacks {must:?}");
    }
    for (path, body) in tree.files() {
        if path.ends_with(".bicep") {
            assert!(
                !body.contains("listCredentials"),
                "{path} reads credentials"
            );
            assert!(!body.contains("adminUserEnabled: true"), "{path}");
        }
    }
}
