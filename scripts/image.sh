#!/usr/bin/env bash
# Builds the static geoha binary (if needed) and the FROM-scratch image.
# Usage: scripts/image.sh [TAG]   (default geoha:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-geoha:dev}"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --target x86_64-unknown-linux-gnu -p geoha
docker build -q -t "$tag" . >/dev/null
echo "$tag"
