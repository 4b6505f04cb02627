//! The overlays as `kubectl kustomize` builds them: patches merge into the base, the
//! digest and the region reach the Deployment. Skipped (with a message) when kubectl
//! is not installed; CI's machine image has it.

use std::path::Path;
use std::process::Command;

use geoha_render::write_tree;
use serde_json::Value;

use crate::rendered::{all_renderings, at, env_value, str_at, u64_at, yaml_documents, TEST_DIGEST};

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_documents(&String::from_utf8(out.stdout).expect("UTF-8"))
}

#[test]
fn kubectl_kustomize_builds_every_overlay_with_region_digest_and_replicas() {
    if !kubectl_available() {
        eprintln!("SKIPPED: kubectl is not installed; the overlays were not built");
        return;
    }
    for (t, tree) in all_renderings() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_tree(&tree, dir.path()).expect("write tree");
        for region in &t.regions {
            let objects = kustomize(&dir.path().join("k8s/overlays").join(&region.name));
            assert_eq!(objects.len(), 7, "{}: every base object", region.name);
            let want = (region.zones.len() as u64 * u64::from(region.replicas_per_zone)).max(3);
            for o in &objects {
                assert_eq!(
                    at(o, "metadata.labels")["geoha.dev/region"],
                    region.name.as_str(),
                    "{} is labelled with its region",
                    str_at(o, "kind")
                );
            }
            let d = objects
                .iter()
                .find(|o| o["kind"] == "Deployment")
                .expect("a Deployment");
            assert_eq!(u64_at(d, "spec.replicas"), want);
            let c = at(d, "spec.template.spec.containers.0");
            let repository = format!("{}.azurecr.io/{}", t.registry_name(), t.image.name);
            assert_eq!(str_at(c, "image"), format!("{repository}@{TEST_DIGEST}"));
            assert_eq!(
                str_at(env_value(c, "GEOHA_REGION").expect("GEOHA_REGION"), "value"),
                region.name
            );
            // The patch added to the base's env rather than replacing it.
            for name in ["GEOHA_REPLICA", "GEOHA_VERSION", "GEOHA_DRAIN_DELAY"] {
                assert!(env_value(c, name).is_some(), "{name} kept");
            }
            assert!(at(c, "lifecycle.preStop.sleep.seconds").is_u64());
            assert_eq!(
                at(d, "spec.template.metadata.labels")["geoha.dev/region"],
                region.name.as_str()
            );
            assert!(
                at(d, "spec.selector.matchLabels")
                    .get("geoha.dev/region")
                    .is_none(),
                "selectors stay region-neutral"
            );
            assert_eq!(
                at(d, "spec.template.spec.topologySpreadConstraints")
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            let hpa = objects
                .iter()
                .find(|o| o["kind"] == "HorizontalPodAutoscaler")
                .expect("an HPA");
            assert_eq!(u64_at(hpa, "spec.minReplicas"), want);
            assert_eq!(str_at(hpa, "spec.scaleTargetRef.name"), "geoha-api");
        }
    }
}
