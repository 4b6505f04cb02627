//! The GitHub Actions workflow (`github/workflows/deploy.yml`; copy it to
//! `.github/workflows/`): build the image once, tag it by commit, push it and capture
//! its digest; render the manifests pinned to that digest; then deploy one region at a
//! time — apply, wait for the rollout, smoke-test `/default/` through the region's
//! ingress — and only then the next region. Azure is reached with OIDC federated
//! credentials (`id-token: write`), never a stored secret, and every deploy job runs in
//! the `production` environment, so a reviewer approves each region in turn.
//!
//! The text is a template rather than serialized structs: comments and the shell steps
//! read better as written. The tests parse it back as YAML and check its structure.

use crate::plan::{Plan, RegionPlan};
use crate::tree::RenderedTree;

/// Where the rendered tree lives in the repository the workflow runs in.
pub(crate) const DEPLOY_DIR: &str = "deploy";
/// GitHub's own actions, pinned to the commit of a release (the comment names it).
/// `azure/login` stays on its major tag: pin it the same way in your fork.
const CHECKOUT: &str = "11d5960a326750d5838078e36cf38b85af677262  # v4.4.0";
const UPLOAD_ARTIFACT: &str = "ea165f8d65b6e75b540449e92b4886f43607fa02  # v4.6.2";
const DOWNLOAD_ARTIFACT: &str = "d3f86a106a0bac45b974a628896c90dbdf5c8093  # v4.3.0";
/// The GitHub environment every deploy job waits on.
pub(crate) const ENVIRONMENT: &str = "production";

pub(crate) fn render(plan: &Plan<'_>, tree: &mut RenderedTree) {
    let mut text = fill(HEADER, plan, None);
    let mut previous: Option<&RegionPlan> = None;
    for (i, region) in plan.regions.iter().enumerate() {
        let needs = match previous {
            None => "[build]".to_string(),
            Some(p) => format!("[build, deploy-{}]", p.name),
        };
        text.push_str(&fill(DEPLOY_JOB, plan, Some(region)).replace("@NEEDS@", &needs));
        if i + 1 == plan.regions.len() {
            text.push_str(&fill(FRONTDOOR_SMOKE, plan, Some(region)));
        }
        previous = Some(region);
    }
    tree.push("github/workflows/deploy.yml", text);
}

fn fill(template: &str, plan: &Plan<'_>, region: Option<&RegionPlan>) -> String {
    let mut out = template
        .replace("@BANNER@", &plan.banner())
        .replace("@CHECKOUT@", CHECKOUT)
        .replace("@UPLOAD@", UPLOAD_ARTIFACT)
        .replace("@DOWNLOAD@", DOWNLOAD_ARTIFACT)
        .replace("@ENV@", &plan.environment)
        .replace("@DEPLOY_DIR@", DEPLOY_DIR)
        .replace("@ENVIRONMENT@", ENVIRONMENT)
        .replace("@RESOURCE_GROUP@", &plan.resource_group)
        .replace("@REGISTRY@", &plan.registry_name)
        .replace("@IMAGE_REPOSITORY@", &plan.image_repository)
        .replace("@FRONT_DOOR@", &plan.frontdoor_name)
        .replace("@FRONT_DOOR_ENDPOINT@", &plan.frontdoor_endpoint);
    if let Some(r) = region {
        let title = if r.role.is_empty() {
            r.name.clone()
        } else {
            format!("{} ({})", r.name, r.role)
        };
        out = out
            .replace("@REGION_TITLE@", &title)
            .replace("@REGION@", &r.name)
            .replace("@CLUSTER@", &r.cluster)
            .replace("@INGRESS_DNS_LABEL@", &r.ingress_dns_label)
            .replace("@INGRESS_HOST@", &r.ingress_host);
    }
    out
}

const HEADER: &str = r#"# @BANNER@
#
# Build once, push by digest, then roll out region by region behind a health
# gate. Copy to .github/workflows/deploy.yml. Needs the repository variables
# AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_SUBSCRIPTION_ID (an app
# registration with federated credentials for this repository's main branch
# and its "@ENVIRONMENT@" environment) and the infrastructure of
# @DEPLOY_DIR@/bicep: see docs/deploy.md.
---
name: deploy

"on":
  push:
    branches: [main]
  workflow_dispatch:

permissions:
  contents: read

concurrency:
  group: deploy-@ENV@
  cancel-in-progress: false

env:
  RESOURCE_GROUP: @RESOURCE_GROUP@
  REGISTRY: @REGISTRY@
  IMAGE_REPOSITORY: @IMAGE_REPOSITORY@

jobs:
  build:
    name: build once, push, render by digest
    runs-on: ubuntu-latest
    permissions:
      contents: read
      id-token: write
    outputs:
      digest: ${{ steps.push.outputs.digest }}
    steps:
      - name: Check out
        uses: actions/checkout@@CHECKOUT@
        with:
          persist-credentials: false

      - name: Build the static binary
        run: |
          RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
            cargo build --profile image --locked --target x86_64-unknown-linux-gnu -p geoha

      - name: Sign in to Azure (OIDC, no stored secret)
        uses: azure/login@v2
        with:
          client-id: ${{ vars.AZURE_CLIENT_ID }}
          tenant-id: ${{ vars.AZURE_TENANT_ID }}
          subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}

      - name: Build the image, tag it by commit, push it, capture its digest
        id: push
        env:
          COMMIT: ${{ github.sha }}
        run: |
          az acr login --name "$REGISTRY"
          image="$IMAGE_REPOSITORY:$COMMIT"
          context=$(mktemp -d)
          cp Dockerfile "$context/"
          cp target/x86_64-unknown-linux-gnu/image/geoha "$context/geoha"
          docker build --tag "$image" "$context"
          docker push "$image"
          digest=$(docker inspect --format '{{index .RepoDigests 0}}' "$image")
          digest="${digest#*@}"
          case "$digest" in
            sha256:*) ;;
            *) echo "no digest for $image" >&2; exit 1 ;;
          esac
          echo "pushed $image as $digest"
          echo "digest=$digest" >> "$GITHUB_OUTPUT"

      - name: Render the manifests pinned to that digest
        env:
          DIGEST: ${{ steps.push.outputs.digest }}
        run: |
          target/x86_64-unknown-linux-gnu/image/geoha render @DEPLOY_DIR@/topology.toml \
            --out rendered --image-digest "$DIGEST"
          grep -rq "@$DIGEST" rendered/k8s/base/deployment.yaml

      - name: Keep the rendered manifests for the deploy jobs
        uses: actions/upload-artifact@@UPLOAD@
        with:
          name: manifests
          path: rendered/k8s
          if-no-files-found: error
"#;

const DEPLOY_JOB: &str = r#"
  deploy-@REGION@:
    name: deploy @REGION_TITLE@
    needs: @NEEDS@
    runs-on: ubuntu-latest
    environment:
      name: @ENVIRONMENT@
      url: http://@INGRESS_HOST@/default/
    permissions:
      contents: read
      id-token: write
    env:
      REGION: @REGION@
      CLUSTER: @CLUSTER@
      INGRESS_DNS_LABEL: @INGRESS_DNS_LABEL@
      INGRESS_HOST: @INGRESS_HOST@
    steps:
      - name: Fetch the rendered manifests
        uses: actions/download-artifact@@DOWNLOAD@
        with:
          name: manifests
          path: rendered/k8s

      - name: Sign in to Azure (OIDC, no stored secret)
        uses: azure/login@v2
        with:
          client-id: ${{ vars.AZURE_CLIENT_ID }}
          tenant-id: ${{ vars.AZURE_TENANT_ID }}
          subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}

      - name: Get the cluster's credentials
        run: |
          az aks get-credentials --resource-group "$RESOURCE_GROUP" \
            --name "$CLUSTER" --overwrite-existing

      - name: Install or upgrade ingress-nginx (the Front Door origin)
        run: |
          # The DNS label gives the load balancer the host name Front Door uses.
          azure='controller.service.annotations.service\.beta\.kubernetes\.io'
          helm upgrade --install ingress-nginx ingress-nginx \
            --repo https://kubernetes.github.io/ingress-nginx \
            --namespace ingress-nginx --create-namespace \
            --set controller.replicaCount=2 \
            --set-string "$azure/azure-dns-label-name=$INGRESS_DNS_LABEL" \
            --set-string "$azure/azure-load-balancer-health-probe-request-path=/healthz" \
            --wait --timeout 10m

      - name: Apply
        run: kubectl apply -k "rendered/k8s/overlays/$REGION"

      - name: Wait for the rollout
        run: |
          kubectl --namespace geoha rollout status deployment/geoha-api \
            --timeout=10m

      - name: Smoke-test /default/ through the region's ingress
        run: |
          for attempt in $(seq 1 30); do
            url="http://$INGRESS_HOST/default/"
            if body=$(curl --fail --silent --show-error --max-time 5 "$url"); then
              echo "$body"
              if echo "$body" | jq --exit-status --arg region "$REGION" \
                '.region == $region' >/dev/null; then
                exit 0
              fi
            fi
            echo "attempt $attempt: not answering from $REGION yet"
            sleep 10
          done
          echo "$REGION did not answer through http://$INGRESS_HOST/default/" >&2
          exit 1

      - name: Roll the region back when it is not healthy
        if: failure()
        run: kubectl --namespace geoha rollout undo deployment/geoha-api
"#;

const FRONTDOOR_SMOKE: &str = r#"
      - name: Smoke-test /default/ through Front Door
        run: |
          host=$(az afd endpoint show --resource-group "$RESOURCE_GROUP" \
            --profile-name @FRONT_DOOR@ --endpoint-name @FRONT_DOOR_ENDPOINT@ \
            --query hostName --output tsv)
          # A new route can take minutes to reach every Front Door edge.
          for attempt in $(seq 1 60); do
            url="https://$host/default/"
            if curl --fail --silent --show-error --max-time 10 "$url"; then
              exit 0
            fi
            echo "attempt $attempt: Front Door not answering yet"
            sleep 10
          done
          exit 1
"#;
