//! Bicep: `main.bicep` (subscription scope: the resource group, then the registry, one
//! AKS cluster per region and Front Door as local modules) and `main.parameters.json`,
//! which carries everything that comes from the topology.
//!
//! The templates themselves are fixed text: every value that varies lives in the
//! parameters file, so a reviewer reads one JSON file to see what a topology changes,
//! and the tests can check that every declared parameter is given and every given one
//! is declared (the reference's provisioning script used an undefined variable).

use serde::Serialize;

use crate::plan::Plan;
use crate::tree::RenderedTree;
use crate::RenderError;

/// AKS version the clusters run; `lifecycle.preStop.sleep` needs 1.30 or later.
pub(crate) const KUBERNETES_VERSION: &str = "1.33";
/// Node size: 2 vCPU, 8 GiB, available in zones in every region that has zones.
pub(crate) const NODE_VM_SIZE: &str = "Standard_D2s_v5";
/// Nodes per cluster at least: one per zone, and three hosts to spread replicas over.
const MIN_NODES: usize = 3;

pub(crate) fn render(plan: &Plan<'_>, tree: &mut RenderedTree) -> Result<(), RenderError> {
    let banner = format!("// {}\n", plan.banner());
    tree.push("bicep/main.bicep", format!("{banner}{MAIN}"));
    tree.push(
        "bicep/modules/registry.bicep",
        format!("{banner}{REGISTRY}"),
    );
    tree.push("bicep/modules/aks.bicep", format!("{banner}{AKS}"));
    tree.push(
        "bicep/modules/frontdoor.bicep",
        format!("{banner}{FRONTDOOR}"),
    );
    let params = parameters(plan);
    let json = serde_json::to_string_pretty(&params).map_err(|e| RenderError::Serialize {
        path: "bicep/main.parameters.json".into(),
        message: e.to_string(),
    })?;
    tree.push("bicep/main.parameters.json", format!("{json}\n"));
    Ok(())
}

fn parameters(plan: &Plan<'_>) -> ParametersFile {
    let probe = &plan.topology.frontdoor.probe;
    ParametersFile {
        schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        content_version: "1.0.0.0",
        parameters: Parameters {
            resource_group_name: Value::of(plan.resource_group.clone()),
            location: Value::of(plan.registry_location.clone()),
            container_registry_name: Value::of(plan.registry_name.clone()),
            registry_replica_locations: Value::of(plan.registry_replica_locations.clone()),
            clusters: Value::of(
                plan.regions
                    .iter()
                    .map(|r| Cluster {
                        name: r.cluster.clone(),
                        location: r.name.clone(),
                        role: r.role.clone(),
                        zones: r.zones.clone(),
                        node_count: r.zones.len().max(MIN_NODES),
                        ingress_dns_label: r.ingress_dns_label.clone(),
                        origin_name: r.origin_name.clone(),
                        priority: r.priority,
                        weight: r.weight,
                    })
                    .collect(),
            ),
            kubernetes_version: Value::of(KUBERNETES_VERSION.into()),
            node_vm_size: Value::of(NODE_VM_SIZE.into()),
            front_door_name: Value::of(plan.frontdoor_name.clone()),
            front_door_endpoint_name: Value::of(plan.frontdoor_endpoint.clone()),
            origin_response_timeout_seconds: Value::of(plan.origin_response_timeout_s),
            probe_path: Value::of(probe.path.clone()),
            probe_request_type: Value::of(probe.method.as_str().into()),
            probe_interval_in_seconds: Value::of(plan.probe_interval_s),
            sample_size: Value::of(probe.sample_size),
            successful_samples_required: Value::of(probe.successful_samples_required),
            additional_latency_in_milliseconds: Value::of(probe.additional_latency_ms),
            session_affinity: Value::of(plan.topology.frontdoor.session_affinity),
        },
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ParametersFile {
    #[serde(rename = "$schema")]
    schema: &'static str,
    content_version: &'static str,
    parameters: Parameters,
}

/// One field per `param` of `main.bicep`, in the same order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    resource_group_name: Value<String>,
    location: Value<String>,
    container_registry_name: Value<String>,
    registry_replica_locations: Value<Vec<String>>,
    clusters: Value<Vec<Cluster>>,
    kubernetes_version: Value<String>,
    node_vm_size: Value<String>,
    front_door_name: Value<String>,
    front_door_endpoint_name: Value<String>,
    origin_response_timeout_seconds: Value<u64>,
    probe_path: Value<String>,
    probe_request_type: Value<String>,
    probe_interval_in_seconds: Value<u64>,
    sample_size: Value<u32>,
    successful_samples_required: Value<u32>,
    additional_latency_in_milliseconds: Value<u32>,
    session_affinity: Value<bool>,
}

#[derive(Debug, Serialize)]
struct Value<T> {
    value: T,
}

impl<T> Value<T> {
    fn of(value: T) -> Self {
        Value { value }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Cluster {
    name: String,
    location: String,
    role: String,
    zones: Vec<String>,
    node_count: usize,
    ingress_dns_label: String,
    origin_name: String,
    priority: u8,
    weight: u16,
}

const MAIN: &str = r#"// Deploy: az deployment sub create --location <location> \
//   --template-file deploy/bicep/main.bicep --parameters @deploy/bicep/main.parameters.json
targetScope = 'subscription'

@description('Resource group for everything (topology: resource_group).')
@minLength(1)
@maxLength(90)
param resourceGroupName string

@description('Location of the resource group and home of the registry (the first registry region).')
param location string

@description('Container registry name (topology: registry.name), 5-50 letters or digits.')
@minLength(5)
@maxLength(50)
param containerRegistryName string

@description('Other locations holding a registry replica (topology: registry.replicas).')
param registryReplicaLocations array

@description('One AKS cluster per region (topology: region[]): name, location, role, zones, nodeCount, ingressDnsLabel, originName, priority, weight.')
@minLength(1)
param clusters array

@description('AKS Kubernetes version (1.30 or later: the pods use the preStop sleep action).')
param kubernetesVersion string

@description('VM size of the cluster nodes.')
param nodeVmSize string

@description('Front Door profile name (topology: frontdoor.name).')
param frontDoorName string

@description('Front Door endpoint name (the host is <name>-<hash>.z01.azurefd.net).')
param frontDoorEndpointName string

@description('Front Door waits this long for an origin (topology: frontdoor.origin_response_timeout).')
@minValue(16)
@maxValue(240)
param originResponseTimeoutSeconds int

@description('Health probe path (topology: frontdoor.probe.path).')
param probePath string

@description('Health probe method (topology: frontdoor.probe.method).')
@allowed([
  'HEAD'
  'GET'
])
param probeRequestType string

@description('Seconds between probes (topology: frontdoor.probe.interval).')
@minValue(1)
@maxValue(255)
param probeIntervalInSeconds int

@description('Probes remembered per origin (topology: frontdoor.probe.sample_size).')
@minValue(1)
param sampleSize int

@description('Successful probes needed for health (topology: frontdoor.probe.successful_samples_required).')
@minValue(1)
param successfulSamplesRequired int

@description('Latency band in ms (topology: frontdoor.probe.additional_latency_ms).')
@minValue(0)
param additionalLatencyInMilliseconds int

@description('Cookie-based session affinity (topology: frontdoor.session_affinity).')
param sessionAffinity bool

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
}

module registry 'modules/registry.bicep' = {
  name: 'geoha-registry'
  scope: rg
  params: {
    name: containerRegistryName
    location: location
    replicaLocations: registryReplicaLocations
  }
}

module aks 'modules/aks.bicep' = [for cluster in clusters: {
  name: 'geoha-aks-${cluster.location}'
  scope: rg
  params: {
    name: cluster.name
    location: cluster.location
    zones: cluster.zones
    nodeCount: cluster.nodeCount
    nodeVmSize: nodeVmSize
    kubernetesVersion: kubernetesVersion
    registryName: registry.outputs.name
  }
}]

// Each origin is the region's ingress-nginx load balancer, reached by the DNS label
// the workflow puts on its public IP.
var origins = [for cluster in clusters: {
  name: cluster.originName
  hostName: '${cluster.ingressDnsLabel}.${cluster.location}.cloudapp.azure.com'
  priority: cluster.priority
  weight: cluster.weight
}]

module frontDoor 'modules/frontdoor.bicep' = {
  name: 'geoha-frontdoor'
  scope: rg
  params: {
    profileName: frontDoorName
    endpointName: frontDoorEndpointName
    originResponseTimeoutSeconds: originResponseTimeoutSeconds
    probePath: probePath
    probeRequestType: probeRequestType
    probeIntervalInSeconds: probeIntervalInSeconds
    sampleSize: sampleSize
    successfulSamplesRequired: successfulSamplesRequired
    additionalLatencyInMilliseconds: additionalLatencyInMilliseconds
    sessionAffinity: sessionAffinity
    origins: origins
  }
}

output registryLoginServer string = registry.outputs.loginServer
output frontDoorHostName string = frontDoor.outputs.endpointHostName
output clusterNames array = [for (cluster, i) in clusters: aks[i].outputs.name]
"#;

const REGISTRY: &str = r#"// The registry: Premium (needed for geo-replication and zone redundancy), one
// replication per extra region, no admin user (clusters pull with their kubelet identity).

@description('Registry name, 5-50 letters or digits.')
param name string

@description('Home location.')
param location string

@description('Other locations holding a replica.')
param replicaLocations array

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  sku: {
    name: 'Premium'
  }
  properties: {
    adminUserEnabled: false
    zoneRedundancy: 'Enabled'
    publicNetworkAccess: 'Enabled'
  }
}

resource replications 'Microsoft.ContainerRegistry/registries/replications@2023-07-01' = [for replicaLocation in replicaLocations: {
  parent: registry
  name: replicaLocation
  location: replicaLocation
  properties: {
    zoneRedundancy: 'Enabled'
    regionEndpointEnabled: true
  }
}]

output name string = registry.name
output loginServer string = registry.properties.loginServer
"#;

const AKS: &str = r#"// One AKS cluster: a node pool across the region's availability zones, a system-assigned
// identity, and its kubelet identity granted AcrPull on the registry (no registry
// credentials anywhere).

@description('Cluster name.')
param name string

@description('Azure location.')
param location string

@description('Availability zones of the node pool.')
param zones array

@description('Nodes at least (the autoscaler may add up to three times as many).')
@minValue(1)
param nodeCount int

@description('VM size of the nodes.')
param nodeVmSize string

@description('Kubernetes version.')
param kubernetesVersion string

@description('Registry the kubelet pulls from (same resource group).')
param registryName string

// Built-in role "AcrPull".
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' = {
  name: name
  location: location
  sku: {
    name: 'Base'
    tier: 'Standard'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    kubernetesVersion: kubernetesVersion
    dnsPrefix: replace(name, '_', '-')
    enableRBAC: true
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        osType: 'Linux'
        type: 'VirtualMachineScaleSets'
        vmSize: nodeVmSize
        availabilityZones: zones
        count: nodeCount
        enableAutoScaling: true
        minCount: nodeCount
        maxCount: nodeCount * 3
      }
    ]
    networkProfile: {
      networkPlugin: 'azure'
      networkPluginMode: 'overlay'
      loadBalancerSku: 'standard'
    }
    autoUpgradeProfile: {
      upgradeChannel: 'patch'
      nodeOSUpgradeChannel: 'NodeImage'
    }
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, cluster.id, acrPullRoleId)
  scope: registry
  properties: {
    principalId: cluster.properties.identityProfile.kubeletidentity.objectId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
  }
}

output name string = cluster.name
output kubeletObjectId string = cluster.properties.identityProfile.kubeletidentity.objectId
"#;

const FRONTDOOR: &str = r#"// Front Door Standard: profile, endpoint, one origin group whose probe and load
// balancing settings come from the topology, one origin per region, route /*.

@description('Profile name.')
param profileName string

@description('Endpoint name.')
param endpointName string

@description('Seconds to wait for an origin.')
param originResponseTimeoutSeconds int

@description('Health probe path.')
param probePath string

@description('HEAD or GET.')
param probeRequestType string

@description('Seconds between probes.')
param probeIntervalInSeconds int

@description('Probes remembered per origin.')
param sampleSize int

@description('Successful probes needed for health.')
param successfulSamplesRequired int

@description('Latency band in milliseconds.')
param additionalLatencyInMilliseconds int

@description('Cookie-based session affinity.')
param sessionAffinity bool

@description('Origins: name, hostName, priority, weight.')
param origins array

resource profile 'Microsoft.Cdn/profiles@2024-02-01' = {
  name: profileName
  location: 'global'
  sku: {
    name: 'Standard_AzureFrontDoor'
  }
  properties: {
    originResponseTimeoutSeconds: originResponseTimeoutSeconds
  }
}

resource endpoint 'Microsoft.Cdn/profiles/afdEndpoints@2024-02-01' = {
  parent: profile
  name: endpointName
  location: 'global'
  properties: {
    enabledState: 'Enabled'
  }
}

resource originGroup 'Microsoft.Cdn/profiles/originGroups@2024-02-01' = {
  parent: profile
  name: 'api'
  properties: {
    loadBalancingSettings: {
      sampleSize: sampleSize
      successfulSamplesRequired: successfulSamplesRequired
      additionalLatencyInMilliseconds: additionalLatencyInMilliseconds
    }
    healthProbeSettings: {
      probePath: probePath
      probeRequestType: probeRequestType
      probeProtocol: 'Http'
      probeIntervalInSeconds: probeIntervalInSeconds
    }
    sessionAffinityState: sessionAffinity ? 'Enabled' : 'Disabled'
  }
}

resource originResources 'Microsoft.Cdn/profiles/originGroups/origins@2024-02-01' = [for origin in origins: {
  parent: originGroup
  name: origin.name
  properties: {
    hostName: origin.hostName
    originHostHeader: origin.hostName
    httpPort: 80
    httpsPort: 443
    priority: origin.priority
    weight: origin.weight
    enabledState: 'Enabled'
    enforceCertificateNameCheck: true
  }
}]

resource route 'Microsoft.Cdn/profiles/afdEndpoints/routes@2024-02-01' = {
  parent: endpoint
  name: 'api'
  dependsOn: [
    originResources
  ]
  properties: {
    originGroup: {
      id: originGroup.id
    }
    supportedProtocols: [
      'Http'
      'Https'
    ]
    patternsToMatch: [
      '/*'
    ]
    forwardingProtocol: 'HttpOnly'
    linkToDefaultDomain: 'Enabled'
    httpsRedirect: 'Enabled'
  }
}

output endpointHostName string = endpoint.properties.hostName
"#;
