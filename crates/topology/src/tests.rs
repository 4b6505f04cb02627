use super::*;

fn err_text(text: &str) -> String {
    Topology::from_toml_str(text, "t.toml")
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn builtin_default_mirrors_the_reference_with_a_fast_probe() {
    let t = Topology::builtin_default();
    assert_eq!(t.environment, "dev");
    let names: Vec<_> = t
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.role.as_str()))
        .collect();
    assert_eq!(names, [("eastus2", "green"), ("centralus", "blue")]);
    for r in &t.regions {
        assert_eq!(r.zones, ["1", "2", "3"]);
        assert_eq!((r.priority, r.weight), (1, 50));
    }
    assert_eq!(t.frontdoor.probe.method, ProbeMethod::Head);
    assert_eq!(t.frontdoor.probe.path, "/");
    assert!(t.frontdoor.probe.interval <= Duration::from_secs(1));
    assert_eq!(t.frontdoor.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(t.replica_count(), 6);
}

#[test]
fn azure_reference_keeps_the_reference_probe_settings() {
    let t = Topology::azure_reference();
    let p = &t.frontdoor.probe;
    assert_eq!(p.interval, Duration::from_secs(30));
    assert_eq!((p.sample_size, p.successful_samples_required), (4, 2));
    assert_eq!(p.additional_latency_ms, 0);
    assert_eq!(t.frontdoor.origin_response_timeout, Duration::from_secs(30));
    assert_eq!(t.regions[0].cluster_name("dev"), "aks-green");
}

#[test]
fn minimal_file_gets_defaults() {
    let t = Topology::from_toml_str(
        "environment = \"lab\"\n[[region]]\nname = \"west\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(t.regions[0].zones.len(), 3);
    assert_eq!(t.frontdoor.probe.interval, Duration::from_secs(30));
    assert_eq!(t.registry_regions().len(), 1);
    assert_eq!(t.registry_name(), "geohalabacr");
    assert_eq!(t.regions[0].cluster_name("lab"), "aks-lab-west");
    assert_eq!(
        t.regions[0].replica_names(),
        ["west-z1-r0", "west-z2-r0", "west-z3-r0"]
    );
}

#[test]
fn round_trips_through_toml() {
    for t in [Topology::builtin_default(), Topology::azure_reference()] {
        let text = t.to_toml_string();
        let back = Topology::from_toml_str(&text, "back.toml").unwrap();
        assert_eq!(back, t, "{text}");
    }
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let msg = err_text("environment = \"dev\"\n\n[[region]]\nname = \"a\"\nwieght = 3\n");
    assert!(msg.starts_with("t.toml:5:1: wieght: "), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn syntax_error_has_a_line() {
    let msg = err_text("environment = \"dev\"\n[[region]\n");
    assert!(msg.starts_with("t.toml:2:"), "{msg}");
}

#[test]
fn wrong_type_has_a_line() {
    let msg = err_text("environment = \"dev\"\n[[region]]\nname = \"a\"\npriority = \"high\"\n");
    assert!(msg.starts_with("t.toml:4:"), "{msg}");
}

#[test]
fn value_errors_are_all_reported_at_the_line_of_their_key() {
    let text = "environment = \"dev\"\n\
[frontdoor.probe]\n\
sample_size = 4\n\
successful_samples_required = 5\n\
[[region]]\n\
name = \"a\"\n\
[[region]]\n\
name = \"b\"\n\
priority = 9\n\
weight = 0\n\
zones = [\"1\", \"1\"]\n";
    let msg = err_text(text);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 4, "{msg}");
    assert!(lines[0].starts_with("t.toml:4:1: frontdoor.probe.successful_samples_required: must be 1..=sample_size (4), got 5"), "{msg}");
    assert!(
        lines[1].starts_with("t.toml:9:1: region[1].priority: must be 1..=5"),
        "{msg}"
    );
    assert!(
        lines[2].starts_with("t.toml:10:1: region[1].weight: must be 1..=1000"),
        "{msg}"
    );
    assert!(
        lines[3].starts_with("t.toml:11:15: region[1].zones[1]: zone \"1\" appears twice"),
        "{msg}"
    );
}

#[test]
fn duplicate_regions_and_unknown_registry_replicas_are_refused() {
    let msg = err_text(
        "environment = \"dev\"\n[registry]\nreplicas = [\"nowhere\"]\n[[region]]\nname = \"a\"\n[[region]]\nname = \"a\"\n",
    );
    assert!(
        msg.contains("t.toml:3:13: registry.replicas[0]: \"nowhere\" is not a region"),
        "{msg}"
    );
    assert!(
        msg.contains("t.toml:7:1: region[1].name: region \"a\" appears twice"),
        "{msg}"
    );
}

#[test]
fn no_region_is_an_error() {
    let msg = err_text("environment = \"dev\"\nregion = []\n");
    assert!(msg.contains("region: at least one [[region]]"), "{msg}");
    let msg = err_text("environment = \"dev\"\n");
    assert!(msg.contains("region"), "{msg}");
}

#[test]
fn bad_names_are_refused() {
    let msg = err_text("environment = \"Dev Env\"\n[[region]]\nname = \"East US\"\n");
    assert!(msg.contains("t.toml:1:1: environment:"), "{msg}");
    assert!(msg.contains("t.toml:3:1: region[0].name:"), "{msg}");
}

#[test]
fn bad_duration_is_refused_with_a_line() {
    let msg = err_text(
        "environment = \"dev\"\n[frontdoor.probe]\ninterval = \"soon\"\n[[region]]\nname = \"a\"\n",
    );
    assert!(msg.starts_with("t.toml:3:"), "{msg}");
}

#[test]
fn from_file_names_the_file_and_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "environment = 3\n").unwrap();
    let msg = Topology::from_file(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:1:", path.display())), "{msg}");
    let missing = Topology::from_file(&dir.path().join("none.toml")).unwrap_err();
    assert!(matches!(missing, TopologyError::Read { .. }));
}

#[test]
fn random_edits_never_panic() {
    // A cheap fuzz: delete or duplicate each line of a good file; every result either
    // parses or gives a located message.
    let good = BUILTIN_DEFAULT;
    let lines: Vec<&str> = good.lines().collect();
    for i in 0..lines.len() {
        for edit in 0..3 {
            let mut l = lines.clone();
            match edit {
                0 => {
                    l.remove(i);
                }
                1 => l.insert(i, lines[i]),
                _ => l[i] = &lines[i][..lines[i].len() / 2],
            }
            let text = l.join("\n");
            if let Err(e) = Topology::from_toml_str(&text, "f.toml") {
                assert!(e.to_string().starts_with("f.toml"), "{e}");
            }
        }
    }
}

#[test]
fn imports_the_reference_variables_json() {
    let text = include_str!("../../../examples/variables.json");
    let imported = import::from_variables_json(text, "variables.json").unwrap();
    let t = imported.topology;
    assert_eq!(t.environment, "dev");
    assert_eq!(t.resource_group(), "rg-aks-acr-ha-dev");
    assert_eq!(t.registry_name(), "acrakshadev");
    assert_eq!(t.frontdoor_name(), "fd-aks-acr-ha-dev");
    assert_eq!(t.image.name, "microservice-api");
    assert_eq!(t.regions[0].name, "eastus2");
    assert_eq!(t.regions[0].role, "green");
    assert_eq!(t.regions[0].cluster_name("dev"), "aks-green");
    assert_eq!(t.regions[1].name, "centralus");
    assert_eq!(t.frontdoor.probe.interval, Duration::from_secs(30));
    assert!(imported.notes.is_empty(), "{:?}", imported.notes);
    // What it writes parses back to the same topology.
    assert_eq!(
        Topology::from_toml_str(&t.to_toml_string(), "x").unwrap(),
        t
    );
}

#[test]
fn import_reports_unused_keys_and_refuses_bad_shapes() {
    let imported = import::from_variables_json(
        r#"{"env":"prod","prod":{"location_green":"westeurope","subscription":"x"}}"#,
        "v.json",
    )
    .unwrap();
    assert_eq!(imported.topology.regions.len(), 1);
    assert!(imported
        .notes
        .iter()
        .any(|n| n.contains("prod.subscription")));
    assert!(imported.notes.iter().any(|n| n.contains("location_blue")));

    for (bad, want) in [
        ("{", "not JSON"),
        (r#"{"dev":{}}"#, "missing string key \"env\""),
        (r#"{"env":"dev"}"#, "no object \"dev\""),
        (r#"{"env":"dev","dev":{}}"#, "neither location_green"),
        (
            r#"{"env":"dev","dev":{"location_green":7}}"#,
            "expected a string",
        ),
        (
            r#"{"env":"dev","dev":{"location_green":"x","location_blue":"x"}}"#,
            "appears twice",
        ),
    ] {
        let msg = import::from_variables_json(bad, "v.json")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("v.json: "), "{msg}");
        assert!(msg.contains(want), "{bad}: {msg}");
    }
}
