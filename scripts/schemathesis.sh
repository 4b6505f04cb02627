#!/usr/bin/env bash
# Runs schemathesis against a real `geoha api` and its own OpenAPI document: no server
# error, no response that does not match the schema.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${GEOHA_BIN:-target/debug/geoha}"
log=$(mktemp); trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
"$bin" --log-format json api --listen 127.0.0.1:0 --ip-lookup-url off 2>"$log" & pid=$!
for _ in $(seq 1 100); do grep -q 'listening addr=' "$log" && break; sleep 0.05; done
addr=$(grep -o 'listening addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2)
schemathesis run "http://$addr/openapi.json" --checks all --max-examples 50 \
  ${SCHEMATHESIS_EXTRA:-}
