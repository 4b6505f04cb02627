//! The HA rules, asserted on the rendered Kubernetes objects read back as data.

use geoha_render::{DRAIN_DEADLINE_SECONDS, DRAIN_DELAY_SECONDS, PRE_STOP_SLEEP_SECONDS};
use geoha_topology::Topology;
use serde_json::Value;

use crate::rendered::{
    all_renderings, at, env_value, render_default, str_at, u64_at, yaml, TEST_DIGEST,
};

const BASE: &str = "k8s/base";

fn deployment(tree: &geoha_render::RenderedTree) -> Value {
    yaml(tree, &format!("{BASE}/deployment.yaml"))
}

fn container(deployment: &Value) -> &Value {
    let containers = at(deployment, "spec.template.spec.containers")
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn pod_labels(deployment: &Value) -> &serde_json::Map<String, Value> {
    at(deployment, "spec.template.metadata.labels")
        .as_object()
        .expect("pod labels")
}

/// `selector` matches the pod template's labels.
fn selects_the_pods(selector: &Value, deployment: &Value) -> bool {
    let labels = pod_labels(deployment);
    let wanted = selector.as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_base_lists_every_object_and_each_lives_in_the_geoha_namespace() {
    let tree = render_default();
    let kustomization = yaml(&tree, &format!("{BASE}/kustomization.yaml"));
    let resources = at(&kustomization, "resources").as_array().unwrap();
    let mut kinds = Vec::new();
    for resource in resources {
        let file = resource.as_str().unwrap();
        let object = yaml(&tree, &format!("{BASE}/{file}"));
        let kind = str_at(&object, "kind").to_string();
        if kind == "Namespace" {
            assert_eq!(str_at(&object, "metadata.name"), "geoha");
        } else {
            assert_eq!(str_at(&object, "metadata.namespace"), "geoha", "{file}");
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount"
        ]
    );
    // Every file of the base is listed (nothing rendered and silently left out).
    let listed = tree
        .files()
        .iter()
        .filter(|(p, _)| p.starts_with(BASE) && !p.ends_with("kustomization.yaml"))
        .count();
    assert_eq!(listed, resources.len());
}

#[test]
fn at_least_three_replicas_spread_over_zones_and_hosts() {
    for (t, tree) in all_renderings() {
        let d = deployment(&tree);
        assert!(u64_at(&d, "spec.replicas") >= 3, "{}", t.environment);
        assert_eq!(u64_at(&d, "spec.strategy.rollingUpdate.maxUnavailable"), 0);
        let spread = at(&d, "spec.template.spec.topologySpreadConstraints")
            .as_array()
            .unwrap();
        let mut keys = Vec::new();
        for c in spread {
            assert_eq!(u64_at(c, "maxSkew"), 1);
            assert!(selects_the_pods(at(c, "labelSelector.matchLabels"), &d));
            keys.push((str_at(c, "topologyKey"), str_at(c, "whenUnsatisfiable")));
        }
        assert!(keys.contains(&("topology.kubernetes.io/zone", "DoNotSchedule")));
        assert!(keys.iter().any(|(k, _)| *k == "kubernetes.io/hostname"));
        assert!(selects_the_pods(at(&d, "spec.selector.matchLabels"), &d));
    }
}

#[test]
fn probes_use_the_api_endpoints_on_the_named_port() {
    let tree = render_default();
    let d = deployment(&tree);
    let c = container(&d);
    assert_eq!(str_at(c, "ports.0.name"), "http");
    assert_eq!(u64_at(c, "ports.0.containerPort"), 8080);
    for (probe, path) in [
        ("startupProbe", "/startupz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ] {
        assert_eq!(str_at(c, &format!("{probe}.httpGet.path")), path);
        assert_eq!(str_at(c, &format!("{probe}.httpGet.port")), "http");
        let timeout = u64_at(c, &format!("{probe}.timeoutSeconds"));
        let period = u64_at(c, &format!("{probe}.periodSeconds"));
        assert!(
            timeout < period,
            "{probe}: timeout {timeout} < period {period}"
        );
    }
    // The startup budget outlasts the public-IP lookup; liveness is slower than readiness.
    assert!(
        u64_at(c, "startupProbe.periodSeconds") * u64_at(c, "startupProbe.failureThreshold") >= 30
    );
    assert!(
        u64_at(c, "livenessProbe.periodSeconds") * u64_at(c, "livenessProbe.failureThreshold")
            > u64_at(c, "readinessProbe.periodSeconds")
                * u64_at(c, "readinessProbe.failureThreshold")
    );
    let args: Vec<&str> = at(c, "args")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["api", "--listen", "0.0.0.0:8080"]);
    assert_eq!(
        at(&d, "spec.template.metadata.annotations")["prometheus.io/path"],
        "/metrics"
    );
}

#[test]
fn the_pre_stop_pause_and_the_drain_fit_inside_the_grace_period() {
    let tree = render_default();
    let d = deployment(&tree);
    let c = container(&d);
    let grace = u64_at(&d, "spec.template.spec.terminationGracePeriodSeconds");
    let pre_stop = u64_at(c, "lifecycle.preStop.sleep.seconds");
    assert_eq!(pre_stop, u64::from(PRE_STOP_SLEEP_SECONDS));
    assert!(pre_stop < grace);
    // The API is told the same drain the grace period was computed from.
    let env = |name: &str| {
        env_value(c, name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} not set"))
            .to_string()
    };
    assert_eq!(env("GEOHA_DRAIN_DELAY"), format!("{DRAIN_DELAY_SECONDS}s"));
    assert_eq!(
        env("GEOHA_DRAIN_DEADLINE"),
        format!("{DRAIN_DEADLINE_SECONDS}s")
    );
    let drain = u64::from(DRAIN_DELAY_SECONDS + DRAIN_DEADLINE_SECONDS);
    assert!(
        pre_stop + drain < grace,
        "preStop {pre_stop}s + drain {drain}s must end before SIGKILL at {grace}s"
    );
    // No exec hook: a FROM-scratch image has no shell and no sleep binary.
    assert!(c["lifecycle"]["preStop"]["exec"].is_null());
    assert_eq!(
        str_at(
            env_value(c, "GEOHA_REPLICA").unwrap(),
            "valueFrom.fieldRef.fieldPath"
        ),
        "metadata.name"
    );
}

#[test]
fn the_pod_runs_non_root_read_only_without_capabilities() {
    let tree = render_default();
    let d = deployment(&tree);
    let pod = at(&d, "spec.template.spec");
    assert_eq!(at(pod, "securityContext.runAsNonRoot"), true);
    assert_eq!(
        str_at(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    assert_eq!(at(pod, "automountServiceAccountToken"), false);
    let c = container(&d);
    let sc = at(c, "securityContext");
    assert_eq!(at(sc, "allowPrivilegeEscalation"), false);
    assert_eq!(at(sc, "readOnlyRootFilesystem"), true);
    assert_eq!(at(sc, "runAsNonRoot"), true);
    assert_eq!(u64_at(sc, "runAsUser"), 65532);
    assert_eq!(at(sc, "capabilities.drop"), &serde_json::json!(["ALL"]));
    assert_eq!(str_at(sc, "seccompProfile.type"), "RuntimeDefault");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                at(c, &format!("resources.{kind}.{resource}")).is_string(),
                "{kind}.{resource}"
            );
        }
    }
    let ns = yaml(&tree, &format!("{BASE}/namespace.yaml"));
    assert_eq!(
        at(&ns, "metadata.labels")["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn the_disruption_budget_lets_one_replica_go_and_keeps_the_rest() {
    for (t, tree) in all_renderings() {
        let d = deployment(&tree);
        let pdb = yaml(&tree, &format!("{BASE}/poddisruptionbudget.yaml"));
        assert!(selects_the_pods(at(&pdb, "spec.selector.matchLabels"), &d));
        let max_unavailable = u64_at(&pdb, "spec.maxUnavailable");
        assert!(pdb["spec"]["minAvailable"].is_null(), "one of the two only");
        for region in &t.regions {
            let patch = yaml(
                &tree,
                &format!("k8s/overlays/{}/hpa-patch.yaml", region.name),
            );
            let min = u64_at(&patch, "spec.minReplicas");
            assert!(
                (1..min).contains(&max_unavailable),
                "{}: maxUnavailable {max_unavailable} of {min}",
                region.name
            );
        }
    }
}

#[test]
fn service_hpa_and_ingress_point_at_the_deployment() {
    let tree = render_default();
    let d = deployment(&tree);
    let svc = yaml(&tree, &format!("{BASE}/service.yaml"));
    assert!(selects_the_pods(at(&svc, "spec.selector"), &d));
    assert_eq!(str_at(&svc, "spec.type"), "ClusterIP");
    assert_eq!(u64_at(&svc, "spec.ports.0.port"), 80);
    assert_eq!(str_at(&svc, "spec.ports.0.targetPort"), "http");

    let hpa = yaml(&tree, &format!("{BASE}/hpa.yaml"));
    assert_eq!(str_at(&hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        str_at(&hpa, "spec.scaleTargetRef.name"),
        str_at(&d, "metadata.name")
    );
    assert!(u64_at(&hpa, "spec.minReplicas") >= 3);
    assert!(u64_at(&hpa, "spec.maxReplicas") > u64_at(&hpa, "spec.minReplicas"));

    let ing = yaml(&tree, &format!("{BASE}/ingress.yaml"));
    assert_eq!(str_at(&ing, "spec.ingressClassName"), "nginx");
    let path = at(&ing, "spec.rules.0.http.paths.0");
    assert_eq!(str_at(path, "path"), "/");
    assert_eq!(str_at(path, "pathType"), "Prefix");
    assert_eq!(
        str_at(path, "backend.service.name"),
        str_at(&svc, "metadata.name")
    );
    assert_eq!(str_at(path, "backend.service.port.name"), "http");
}

#[test]
fn the_image_is_pinned_by_digest_to_the_registry_login_server() {
    for (t, tree) in all_renderings() {
        let repository = format!("{}.azurecr.io/{}", t.registry_name(), t.image.name);
        let d = deployment(&tree);
        assert_eq!(
            str_at(container(&d), "image"),
            format!("{repository}@{TEST_DIGEST}")
        );
        for region in &t.regions {
            let k = yaml(
                &tree,
                &format!("k8s/overlays/{}/kustomization.yaml", region.name),
            );
            let images = at(&k, "images").as_array().unwrap();
            assert_eq!(images.len(), 1);
            assert_eq!(str_at(&images[0], "name"), repository);
            assert_eq!(str_at(&images[0], "newName"), repository);
            assert_eq!(str_at(&images[0], "digest"), TEST_DIGEST);
            assert!(
                images[0]["newTag"].is_null(),
                "a tag would defeat the digest"
            );
        }
    }
    // Without a digest, the clearly fake placeholder is used.
    let tree = render_default();
    assert!(str_at(container(&deployment(&tree)), "image")
        .ends_with(&format!("@{}", geoha_render::PLACEHOLDER_DIGEST)));
}

#[test]
fn every_overlay_sets_its_region_zones_and_replicas() {
    for (t, tree) in all_renderings() {
        let overlays: Vec<&str> = tree
            .files()
            .iter()
            .filter_map(|(p, _)| p.strip_prefix("k8s/overlays/"))
            .filter_map(|p| p.strip_suffix("/kustomization.yaml"))
            .collect();
        let names: Vec<&str> = t.regions.iter().map(|r| r.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(overlays, sorted, "one overlay per region");
        for region in &t.regions {
            let dir = format!("k8s/overlays/{}", region.name);
            let k = yaml(&tree, &format!("{dir}/kustomization.yaml"));
            assert_eq!(at(&k, "resources"), &serde_json::json!(["../../base"]));
            let labels = at(&k, "labels.0");
            assert_eq!(
                at(labels, "pairs")["geoha.dev/region"],
                region.name.as_str()
            );
            assert_eq!(at(labels, "includeSelectors"), false);
            assert_eq!(at(labels, "includeTemplates"), true);
            let want = (region.zones.len() as u64 * u64::from(region.replicas_per_zone)).max(3);
            assert_eq!(str_at(&k, "replicas.0.name"), "geoha-api");
            assert_eq!(u64_at(&k, "replicas.0.count"), want);

            let patch = yaml(&tree, &format!("{dir}/deployment-patch.yaml"));
            let c = at(&patch, "spec.template.spec.containers.0");
            assert_eq!(str_at(c, "name"), "api", "merges into the base container");
            assert_eq!(
                str_at(env_value(c, "GEOHA_REGION").expect("GEOHA_REGION"), "value"),
                region.name
            );
            let zones: Vec<String> = region
                .zones
                .iter()
                .map(|z| format!("{}-{z}", region.name))
                .collect();
            let term = at(
                &patch,
                "spec.template.spec.affinity.nodeAffinity.\
                 requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0.matchExpressions.0",
            );
            assert_eq!(str_at(term, "key"), "topology.kubernetes.io/zone");
            assert_eq!(at(term, "values"), &serde_json::json!(zones));

            let hpa = yaml(&tree, &format!("{dir}/hpa-patch.yaml"));
            assert_eq!(u64_at(&hpa, "spec.minReplicas"), want);
            assert!(u64_at(&hpa, "spec.maxReplicas") > want);
        }
    }
}

#[test]
fn patches_name_the_objects_of_the_base() {
    let tree = render_default();
    let t = Topology::builtin_default();
    for region in &t.regions {
        for (patch, base) in [
            ("deployment-patch.yaml", "deployment.yaml"),
            ("hpa-patch.yaml", "hpa.yaml"),
        ] {
            let p = yaml(&tree, &format!("k8s/overlays/{}/{patch}", region.name));
            let b = yaml(&tree, &format!("{BASE}/{base}"));
            for key in ["apiVersion", "kind", "metadata.name", "metadata.namespace"] {
                assert_eq!(at(&p, key), at(&b, key), "{patch}: {key}");
            }
        }
    }
}
