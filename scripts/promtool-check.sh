#!/usr/bin/env bash
# Runs `promtool check metrics` on the /metrics output of a real `geoha api` (and any
# other geoha endpoint given as URL arguments once they are running).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${GEOHA_BIN:-target/debug/geoha}"
log=$(mktemp); trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
"$bin" --log-format json api --listen 127.0.0.1:0 --ip-lookup-url off 2>"$log" & pid=$!
for _ in $(seq 1 100); do grep -q 'listening addr=' "$log" && break; sleep 0.05; done
addr=$(grep -o 'listening addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2)
for p in /default/ /default /nope /readyz; do curl -s -o /dev/null "http://$addr$p"; done
curl -fsS "http://$addr/metrics" | promtool check metrics
echo "promtool: geoha api /metrics ok"
