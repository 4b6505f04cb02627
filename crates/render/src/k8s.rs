//! Kubernetes manifests: a kustomize base (the API with its HA settings) and one overlay
//! per region (region label and env, zones, replicas, registry endpoint, digest).
//!
//! The objects are typed serde structs of our own (only the fields we emit, in the
//! order a reader expects), written as YAML, one object per file. `kubectl apply -k
//! k8s/overlays/<region>` is all a cluster needs once ingress-nginx runs on it.
//!
//! Shutdown timing (the API drains on SIGTERM; see `crates/api/src/drain.rs`):
//! `preStop` sleeps [`PRE_STOP_SLEEP_SECONDS`] so endpoint removal reaches kube-proxy
//! and ingress-nginx before the process hears anything; then SIGTERM: `/readyz` turns
//! 503, the listener keeps serving for [`DRAIN_DELAY_SECONDS`], then in-flight requests
//! get up to [`DRAIN_DEADLINE_SECONDS`]. `terminationGracePeriodSeconds` covers the sum
//! plus a margin, so the kubelet never SIGKILLs a replica that is still draining. The
//! image is `FROM scratch` (no `sleep` binary), so the pause is the kubelet's own
//! `lifecycle.preStop.sleep` action (Kubernetes 1.30+).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::{Plan, RegionPlan};
use crate::tree::RenderedTree;
use crate::RenderError;

/// Seconds the kubelet waits before sending SIGTERM.
pub const PRE_STOP_SLEEP_SECONDS: u32 = 5;
/// The API's `--drain-delay` (`GEOHA_DRAIN_DELAY`): serving while `/readyz` says 503.
pub const DRAIN_DELAY_SECONDS: u32 = 5;
/// The API's `--drain-deadline` (`GEOHA_DRAIN_DEADLINE`): in-flight requests finish.
pub const DRAIN_DEADLINE_SECONDS: u32 = 20;
/// Headroom between the end of the drain and SIGKILL.
const GRACE_MARGIN_SECONDS: u32 = 5;
/// What the kubelet allows from deletion to SIGKILL (preStop included).
pub(crate) const TERMINATION_GRACE_SECONDS: u32 =
    PRE_STOP_SLEEP_SECONDS + DRAIN_DELAY_SECONDS + DRAIN_DEADLINE_SECONDS + GRACE_MARGIN_SECONDS;

pub(crate) const NAMESPACE: &str = "geoha";
pub(crate) const APP: &str = "geoha-api";
const CONTAINER: &str = "api";
const PORT: u16 = 8080;
const PORT_NAME: &str = "http";
/// The image's numeric non-root user (the Dockerfile's `USER 65532:65532`).
const UID: u32 = 65532;
/// ingress-nginx's default IngressClass (the reference's controller).
pub(crate) const INGRESS_CLASS: &str = "nginx";
/// Label keys the overlays add to every object and pod.
pub(crate) const REGION_LABEL: &str = "geoha.dev/region";
pub(crate) const ROLE_LABEL: &str = "geoha.dev/role";
/// The zone label AKS nodes carry (`<location>-<zone>`, e.g. `eastus2-1`).
const ZONE_KEY: &str = "topology.kubernetes.io/zone";
const HOST_KEY: &str = "kubernetes.io/hostname";

pub(crate) fn render(plan: &Plan<'_>, tree: &mut RenderedTree) -> Result<(), RenderError> {
    let banner = plan.banner();
    let mut put = |path: String, value: &dyn erased::Yaml| -> Result<(), RenderError> {
        let body = value.to_yaml().map_err(|message| RenderError::Serialize {
            path: path.clone(),
            message,
        })?;
        tree.push(path, format!("# {banner}\n{body}"));
        Ok(())
    };

    let base = "k8s/base";
    put(format!("{base}/kustomization.yaml"), &base_kustomization())?;
    put(format!("{base}/namespace.yaml"), &namespace())?;
    put(format!("{base}/serviceaccount.yaml"), &service_account())?;
    put(format!("{base}/deployment.yaml"), &deployment(plan))?;
    put(format!("{base}/service.yaml"), &service())?;
    put(format!("{base}/poddisruptionbudget.yaml"), &pdb())?;
    put(format!("{base}/hpa.yaml"), &hpa(plan))?;
    put(format!("{base}/ingress.yaml"), &ingress())?;

    for region in &plan.regions {
        let dir = format!("k8s/overlays/{}", region.name);
        put(
            format!("{dir}/kustomization.yaml"),
            &overlay_kustomization(plan, region),
        )?;
        put(
            format!("{dir}/deployment-patch.yaml"),
            &deployment_patch(region),
        )?;
        put(format!("{dir}/hpa-patch.yaml"), &hpa_patch(region))?;
    }
    Ok(())
}

/// Object-safe YAML serialization, so `put` takes any object.
mod erased {
    pub(super) trait Yaml {
        fn to_yaml(&self) -> Result<String, String>;
    }
    impl<T: serde::Serialize> Yaml for T {
        fn to_yaml(&self) -> Result<String, String> {
            serde_norway::to_string(self).map_err(|e| e.to_string())
        }
    }
}

// === the objects ===

fn app_labels() -> Labels {
    Labels::from([
        ("app.kubernetes.io/name".to_string(), APP.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "geoha".to_string()),
    ])
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Labels::from([("app.kubernetes.io/name".to_string(), APP.to_string())]),
    }
}

fn meta(name: &str) -> Meta {
    Meta {
        name: name.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        labels: app_labels(),
        annotations: Labels::new(),
    }
}

fn base_kustomization() -> Kustomization {
    Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: [
            "namespace.yaml",
            "serviceaccount.yaml",
            "deployment.yaml",
            "service.yaml",
            "poddisruptionbudget.yaml",
            "hpa.yaml",
            "ingress.yaml",
        ]
        .map(String::from)
        .to_vec(),
        labels: Vec::new(),
        images: Vec::new(),
        replicas: Vec::new(),
        patches: Vec::new(),
    }
}

fn namespace() -> Namespace {
    let mut labels = app_labels();
    // The pod meets the "restricted" Pod Security Standard; let the API server enforce it.
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".into(),
        );
    }
    Namespace {
        api_version: "v1",
        kind: "Namespace",
        metadata: Meta {
            name: NAMESPACE.to_string(),
            namespace: None,
            labels,
            annotations: Labels::new(),
        },
    }
}

fn service_account() -> ServiceAccount {
    ServiceAccount {
        api_version: "v1",
        kind: "ServiceAccount",
        metadata: meta(APP),
        // The API never talks to the Kubernetes API.
        automount_service_account_token: false,
    }
}

fn deployment(plan: &Plan<'_>) -> Deployment {
    let replicas = plan
        .regions
        .iter()
        .map(|r| r.replicas)
        .min()
        .unwrap_or(crate::plan::MIN_REPLICAS_PER_REGION);
    let probe = |path: &str, period: u32, failures: u32| Probe {
        http_get: HttpGet {
            path: path.to_string(),
            port: PORT_NAME,
        },
        period_seconds: period,
        timeout_seconds: 2,
        failure_threshold: failures,
    };
    let env = vec![
        EnvVar::field("GEOHA_REPLICA", "metadata.name"),
        EnvVar::value("GEOHA_VERSION", &plan.topology.image.version),
        // The node's zone label is not visible to the pod through the downward API;
        // say so rather than let the API report its default zone "1".
        EnvVar::value("GEOHA_ZONE", "unknown"),
        EnvVar::value("GEOHA_DRAIN_DELAY", &format!("{DRAIN_DELAY_SECONDS}s")),
        EnvVar::value(
            "GEOHA_DRAIN_DEADLINE",
            &format!("{DRAIN_DEADLINE_SECONDS}s"),
        ),
    ];
    let container = Container {
        name: CONTAINER,
        image: plan.image_ref(),
        args: ["api", "--listen", "0.0.0.0:8080"]
            .map(String::from)
            .to_vec(),
        ports: vec![ContainerPort {
            name: PORT_NAME,
            container_port: PORT,
            protocol: "TCP",
        }],
        env,
        resources: Resources {
            requests: BTreeMap::from([("cpu", "100m".into()), ("memory", "64Mi".into())]),
            limits: BTreeMap::from([("cpu", "1".into()), ("memory", "256Mi".into())]),
        },
        // Up to 60 s to start (the public-IP lookup may be slow), then readiness every
        // 5 s (2 misses take it out of the Service), liveness every 10 s (3 misses restart).
        startup_probe: probe("/startupz", 3, 20),
        readiness_probe: probe("/readyz", 5, 2),
        liveness_probe: probe("/livez", 10, 3),
        lifecycle: Lifecycle {
            pre_stop: LifecycleHandler {
                sleep: SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                },
            },
        },
        security_context: ContainerSecurityContext {
            allow_privilege_escalation: false,
            read_only_root_filesystem: true,
            run_as_non_root: true,
            run_as_user: UID,
            run_as_group: UID,
            capabilities: Capabilities { drop: vec!["ALL"] },
            seccomp_profile: SeccompProfile {
                kind: "RuntimeDefault",
            },
        },
    };
    let spread = |key: &'static str, when: &'static str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key,
        when_unsatisfiable: when,
        label_selector: selector(),
        // Count only the pods of the same rollout, so a surge is spread too.
        match_label_keys: vec!["pod-template-hash"],
    };
    let mut template_annotations = Labels::new();
    template_annotations.insert("prometheus.io/scrape".into(), "true".into());
    template_annotations.insert("prometheus.io/port".into(), PORT.to_string());
    template_annotations.insert("prometheus.io/path".into(), "/metrics".into());
    Deployment {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: meta(APP),
        spec: DeploymentSpec {
            replicas,
            revision_history_limit: 5,
            min_ready_seconds: 5,
            progress_deadline_seconds: 600,
            selector: selector(),
            strategy: DeploymentStrategy {
                kind: "RollingUpdate",
                // Never below the desired count during a rollout.
                rolling_update: RollingUpdate {
                    max_surge: 1,
                    max_unavailable: 0,
                },
            },
            template: PodTemplate {
                metadata: TemplateMeta {
                    labels: app_labels(),
                    annotations: template_annotations,
                },
                spec: PodSpec {
                    service_account_name: APP,
                    automount_service_account_token: false,
                    enable_service_links: false,
                    termination_grace_period_seconds: TERMINATION_GRACE_SECONDS,
                    security_context: PodSecurityContext {
                        run_as_non_root: true,
                        run_as_user: UID,
                        run_as_group: UID,
                        seccomp_profile: SeccompProfile {
                            kind: "RuntimeDefault",
                        },
                    },
                    // Zones must be balanced (a zone outage takes at most a third);
                    // hosts should be, but a node shortage must not block a rollout.
                    topology_spread_constraints: vec![
                        spread(ZONE_KEY, "DoNotSchedule"),
                        spread(HOST_KEY, "ScheduleAnyway"),
                    ],
                    containers: vec![container],
                },
            },
        },
    }
}

fn service() -> Service {
    Service {
        api_version: "v1",
        kind: "Service",
        metadata: meta(APP),
        spec: ServiceSpec {
            kind: "ClusterIP",
            selector: selector().match_labels,
            ports: vec![ServicePort {
                name: PORT_NAME,
                port: 80,
                target_port: PORT_NAME,
                protocol: "TCP",
            }],
        },
    }
}

fn pdb() -> PodDisruptionBudget {
    PodDisruptionBudget {
        api_version: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: meta(APP),
        spec: PdbSpec {
            // One voluntary eviction at a time: node drains and upgrades proceed, and
            // at least two of three replicas keep serving.
            max_unavailable: 1,
            selector: selector(),
            // A crash-looping pod must not block node drains.
            unhealthy_pod_eviction_policy: "AlwaysAllow",
        },
    }
}

fn hpa(plan: &Plan<'_>) -> HorizontalPodAutoscaler {
    let min = plan
        .regions
        .iter()
        .map(|r| r.replicas)
        .min()
        .unwrap_or(crate::plan::MIN_REPLICAS_PER_REGION);
    HorizontalPodAutoscaler {
        api_version: "autoscaling/v2",
        kind: "HorizontalPodAutoscaler",
        metadata: meta(APP),
        spec: HpaSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: "apps/v1",
                kind: "Deployment",
                name: APP,
            },
            min_replicas: min,
            max_replicas: min * 3,
            metrics: vec![HpaMetric {
                kind: "Resource",
                resource: ResourceMetric {
                    name: "cpu",
                    target: MetricTarget {
                        kind: "Utilization",
                        average_utilization: 70,
                    },
                },
            }],
            behavior: HpaBehavior {
                scale_down: ScalingRules {
                    stabilization_window_seconds: 300,
                },
            },
        },
    }
}

fn ingress() -> Ingress {
    let mut metadata = meta(APP);
    // Front Door waits up to its origin response timeout; nginx must not give up first.
    metadata.annotations.insert(
        "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
        "60".into(),
    );
    Ingress {
        api_version: "networking.k8s.io/v1",
        kind: "Ingress",
        metadata,
        spec: IngressSpec {
            ingress_class_name: INGRESS_CLASS,
            rules: vec![IngressRule {
                http: HttpIngressRule {
                    paths: vec![IngressPath {
                        path: "/",
                        path_type: "Prefix",
                        backend: IngressBackend {
                            service: ServiceBackend {
                                name: APP,
                                port: ServiceBackendPort { name: PORT_NAME },
                            },
                        },
                    }],
                },
            }],
        },
    }
}

fn overlay_kustomization(plan: &Plan<'_>, region: &RegionPlan) -> Kustomization {
    let mut pairs = Labels::from([(REGION_LABEL.to_string(), region.name.clone())]);
    if !region.role.is_empty() {
        pairs.insert(ROLE_LABEL.to_string(), region.role.clone());
    }
    Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: vec!["../../base".into()],
        labels: vec![KustomizeLabels {
            pairs,
            // Selectors are immutable and the same in every region: leave them alone.
            include_selectors: false,
            include_templates: true,
        }],
        images: vec![KustomizeImage {
            name: plan.image_repository.clone(),
            // Geo-replicas share the login server; Azure serves each pull from the
            // replica nearest to the cluster.
            new_name: plan.image_repository.clone(),
            digest: plan.image_digest.clone(),
        }],
        replicas: vec![KustomizeReplicas {
            name: APP,
            count: region.replicas,
        }],
        patches: vec![
            KustomizePatch {
                path: "deployment-patch.yaml",
            },
            KustomizePatch {
                path: "hpa-patch.yaml",
            },
        ],
    }
}

fn deployment_patch(region: &RegionPlan) -> DeploymentPatch {
    let zones = region
        .zones
        .iter()
        .map(|z| format!("{}-{z}", region.name))
        .collect();
    DeploymentPatch {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: PatchMeta {
            name: APP,
            namespace: NAMESPACE,
        },
        spec: PatchDeploymentSpec {
            template: PatchTemplate {
                spec: PatchPodSpec {
                    affinity: Affinity {
                        node_affinity: NodeAffinity {
                            required_during_scheduling_ignored_during_execution: NodeSelector {
                                node_selector_terms: vec![NodeSelectorTerm {
                                    match_expressions: vec![NodeSelectorRequirement {
                                        key: ZONE_KEY,
                                        operator: "In",
                                        values: zones,
                                    }],
                                }],
                            },
                        },
                    },
                    containers: vec![PatchContainer {
                        name: CONTAINER,
                        env: vec![EnvVar::value("GEOHA_REGION", &region.name)],
                    }],
                },
            },
        },
    }
}

fn hpa_patch(region: &RegionPlan) -> HpaPatch {
    HpaPatch {
        api_version: "autoscaling/v2",
        kind: "HorizontalPodAutoscaler",
        metadata: PatchMeta {
            name: APP,
            namespace: NAMESPACE,
        },
        spec: HpaPatchSpec {
            min_replicas: region.replicas,
            max_replicas: region.max_replicas,
        },
    }
}

// === the types: only the fields we emit, in Kubernetes' spelling ===

type Labels = BTreeMap<String, String>;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: Labels,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: Labels,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    match_labels: Labels,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Namespace {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceAccount {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    automount_service_account_token: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Deployment {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: DeploymentSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: u32,
    revision_history_limit: u32,
    min_ready_seconds: u32,
    progress_deadline_seconds: u32,
    selector: LabelSelector,
    strategy: DeploymentStrategy,
    template: PodTemplate,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentStrategy {
    #[serde(rename = "type")]
    kind: &'static str,
    rolling_update: RollingUpdate,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RollingUpdate {
    max_surge: u32,
    max_unavailable: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodTemplate {
    metadata: TemplateMeta,
    spec: PodSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateMeta {
    labels: Labels,
    annotations: Labels,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    service_account_name: &'static str,
    automount_service_account_token: bool,
    enable_service_links: bool,
    termination_grace_period_seconds: u32,
    security_context: PodSecurityContext,
    topology_spread_constraints: Vec<TopologySpreadConstraint>,
    containers: Vec<Container>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSecurityContext {
    run_as_non_root: bool,
    run_as_user: u32,
    run_as_group: u32,
    seccomp_profile: SeccompProfile,
}

#[derive(Debug, Serialize)]
struct SeccompProfile {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopologySpreadConstraint {
    max_skew: u32,
    topology_key: &'static str,
    when_unsatisfiable: &'static str,
    label_selector: LabelSelector,
    match_label_keys: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    args: Vec<String>,
    ports: Vec<ContainerPort>,
    env: Vec<EnvVar>,
    resources: Resources,
    startup_probe: Probe,
    readiness_probe: Probe,
    liveness_probe: Probe,
    lifecycle: Lifecycle,
    security_context: ContainerSecurityContext,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: &'static str,
    container_port: u16,
    protocol: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_from: Option<EnvVarSource>,
}

impl EnvVar {
    fn value(name: &'static str, value: &str) -> Self {
        EnvVar {
            name,
            value: Some(value.to_string()),
            value_from: None,
        }
    }

    fn field(name: &'static str, field_path: &'static str) -> Self {
        EnvVar {
            name,
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: FieldRef { field_path },
            }),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource {
    field_ref: FieldRef,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef {
    field_path: &'static str,
}

#[derive(Debug, Serialize)]
struct Resources {
    requests: BTreeMap<&'static str, String>,
    limits: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
    period_seconds: u32,
    timeout_seconds: u32,
    failure_threshold: u32,
}

#[derive(Debug, Serialize)]
struct HttpGet {
    path: String,
    port: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Lifecycle {
    pre_stop: LifecycleHandler,
}

#[derive(Debug, Serialize)]
struct LifecycleHandler {
    sleep: SleepAction,
}

#[derive(Debug, Serialize)]
struct SleepAction {
    seconds: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerSecurityContext {
    allow_privilege_escalation: bool,
    read_only_root_filesystem: bool,
    run_as_non_root: bool,
    run_as_user: u32,
    run_as_group: u32,
    capabilities: Capabilities,
    seccomp_profile: SeccompProfile,
}

#[derive(Debug, Serialize)]
struct Capabilities {
    drop: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: ServiceSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "type")]
    kind: &'static str,
    selector: Labels,
    ports: Vec<ServicePort>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: &'static str,
    port: u16,
    target_port: &'static str,
    protocol: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodDisruptionBudget {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: PdbSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PdbSpec {
    max_unavailable: u32,
    selector: LabelSelector,
    unhealthy_pod_eviction_policy: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HorizontalPodAutoscaler {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: HpaSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HpaSpec {
    scale_target_ref: ScaleTargetRef,
    min_replicas: u32,
    max_replicas: u32,
    metrics: Vec<HpaMetric>,
    behavior: HpaBehavior,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaleTargetRef {
    api_version: &'static str,
    kind: &'static str,
    name: &'static str,
}

#[derive(Debug, Serialize)]
struct HpaMetric {
    #[serde(rename = "type")]
    kind: &'static str,
    resource: ResourceMetric,
}

#[derive(Debug, Serialize)]
struct ResourceMetric {
    name: &'static str,
    target: MetricTarget,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricTarget {
    #[serde(rename = "type")]
    kind: &'static str,
    average_utilization: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HpaBehavior {
    scale_down: ScalingRules,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScalingRules {
    stabilization_window_seconds: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Ingress {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: IngressSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressSpec {
    ingress_class_name: &'static str,
    rules: Vec<IngressRule>,
}

#[derive(Debug, Serialize)]
struct IngressRule {
    http: HttpIngressRule,
}

#[derive(Debug, Serialize)]
struct HttpIngressRule {
    paths: Vec<IngressPath>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressPath {
    path: &'static str,
    path_type: &'static str,
    backend: IngressBackend,
}

#[derive(Debug, Serialize)]
struct IngressBackend {
    service: ServiceBackend,
}

#[derive(Debug, Serialize)]
struct ServiceBackend {
    name: &'static str,
    port: ServiceBackendPort,
}

#[derive(Debug, Serialize)]
struct ServiceBackendPort {
    name: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<KustomizeLabels>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<KustomizeImage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<KustomizeReplicas>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patches: Vec<KustomizePatch>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KustomizeLabels {
    pairs: Labels,
    include_selectors: bool,
    include_templates: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
    new_name: String,
    digest: String,
}

#[derive(Debug, Serialize)]
struct KustomizeReplicas {
    name: &'static str,
    count: u32,
}

#[derive(Debug, Serialize)]
struct KustomizePatch {
    path: &'static str,
}

#[derive(Debug, Serialize)]
struct PatchMeta {
    name: &'static str,
    namespace: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentPatch {
    api_version: &'static str,
    kind: &'static str,
    metadata: PatchMeta,
    spec: PatchDeploymentSpec,
}

#[derive(Debug, Serialize)]
struct PatchDeploymentSpec {
    template: PatchTemplate,
}

#[derive(Debug, Serialize)]
struct PatchTemplate {
    spec: PatchPodSpec,
}

#[derive(Debug, Serialize)]
struct PatchPodSpec {
    affinity: Affinity,
    containers: Vec<PatchContainer>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Affinity {
    node_affinity: NodeAffinity,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeAffinity {
    required_during_scheduling_ignored_during_execution: NodeSelector,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelector {
    node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelectorTerm {
    match_expressions: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Serialize)]
struct NodeSelectorRequirement {
    key: &'static str,
    operator: &'static str,
    values: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PatchContainer {
    name: &'static str,
    env: Vec<EnvVar>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HpaPatch {
    api_version: &'static str,
    kind: &'static str,
    metadata: PatchMeta,
    spec: HpaPatchSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HpaPatchSpec {
    min_replicas: u32,
    max_replicas: u32,
}
