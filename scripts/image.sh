#!/usr/bin/env bash
# Builds the static geoha binary (if needed; the `image` profile of Cargo.toml: small
# where code is cold, fast where requests flow) and the FROM-scratch image.
# Usage: scripts/image.sh [TAG]   (default geoha:dev). Prints the tag.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-geoha:dev}"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  cargo build --profile image --target x86_64-unknown-linux-gnu -p geoha >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import sys,json; print(json.load(sys.stdin)["target_directory"])')
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
cp Dockerfile "$ctx/"
cp "$target_dir/x86_64-unknown-linux-gnu/image/geoha" "$ctx/geoha"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
