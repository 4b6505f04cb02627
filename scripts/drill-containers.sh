#!/usr/bin/env bash
# The rollout drills in container mode: `geoha up --containers` on the built-in topology
# (six replica containers, two regions), then `rolling-deploy-containers` (a good image),
# `bad-deploy-containers` (an image that answers 500) and `slow-deploy-containers` (an
# image that answers after 300 ms), the last two caught and rolled back, at 500 req/s. Writes JSON + HTML reports, the rollout logs and a summary to OUT.
# Usage: scripts/drill-containers.sh [OUT] [GEOHA_BIN] [IMAGE]
# (IMAGE default geoha:dev, built by scripts/image.sh; GEOHA_BIN must be static too
# when IMAGE is not given, as for `geoha up --containers`.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/drills/containers}
bin=${2:-${GEOHA_BIN:-target/release/geoha}}
image=${3:-geoha:dev}
mkdir -p "$out"
state=$(mktemp -d)
export GEOHA_STATE_DIR=$state GEOHA_BIN=$bin
export GEOHA_IMAGE_V2="$image-v2" GEOHA_IMAGE_BAD="$image-bad" GEOHA_IMAGE_SLOW="$image-slow"
# Three new digests from the same binary: a label (a good version), GEOHA_INJECT_ERRORS
# (every /default/ answered 500) and GEOHA_INJECT_LATENCY (answered after 300 ms), the
# probes healthy and fast in all three.
printf 'FROM %s\nLABEL geoha.version=2.0.0\n' "$image" | docker build -q -t "$GEOHA_IMAGE_V2" - >/dev/null
printf 'FROM %s\nENV GEOHA_INJECT_ERRORS=1\n' "$image" | docker build -q -t "$GEOHA_IMAGE_BAD" - >/dev/null
printf 'FROM %s\nENV GEOHA_INJECT_LATENCY=300ms\n' "$image" | docker build -q -t "$GEOHA_IMAGE_SLOW" - >/dev/null
up_pid=
cleanup() {
  [ -n "$up_pid" ] && { kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; }
  docker rmi "$GEOHA_IMAGE_V2" "$GEOHA_IMAGE_BAD" "$GEOHA_IMAGE_SLOW" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
start=$(date +%s.%N)
"$bin" up --containers --image "$image" >"$state/up.out" 2>"$state/up.err" &
up_pid=$!
for _ in $(seq 1 600); do
  grep -q "lab running" "$state/up.err" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$state/up.err"; exit 1; }
  sleep 0.1
done
grep -q "lab running" "$state/up.err" || { cat "$state/up.err"; exit 1; }
grep "healthy behind the front door" "$state/up.out" | tee "$out/startup.txt"
summary="$out/summary.txt"
: >"$summary"
for s in rolling-deploy-containers bad-deploy-containers slow-deploy-containers; do
  echo "== $s" | tee -a "$summary"
  "$bin" drill "bench/scenarios/$s.toml" --quiet --json "$out/$s.json" --html "$out/$s.html" 2>/dev/null \
    | tee -a "$summary" || true
  "$bin" status --json >"$out/$s.status.json"
  # The rollout log: every step with its timestamp.
  curl -s -H "Authorization: Bearer $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$state/lab.json")" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control_url"])' "$state/lab.json")/v1/deploy" \
    >"$out/$s.rollout.json" || true
  sleep 3
done
echo "started in: $(cat "$out/startup.txt")"
