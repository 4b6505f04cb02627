#!/usr/bin/env bash
# Builds the image, runs one container on a loopback-published port, and checks that
# /default/ answers with the identity JSON. Removes the container it started.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="$(scripts/image.sh geoha:smoke)"
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "image $tag: $((size / 1024 / 1024)) MiB ($size bytes)"
cid=$(docker run -d --rm -p 127.0.0.1::8080 -e GEOHA_REGION=smoke -e GEOHA_IP_LOOKUP_URL=off \
  --label geoha.test=smoke "$tag")
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
port=$(docker port "$cid" 8080/tcp | head -1 | sed 's/.*://')
for _ in $(seq 1 50); do
  if body=$(curl -fsS -m 2 "http://127.0.0.1:$port/default/" 2>/dev/null); then break; fi
  sleep 0.1
done
echo "container answered: ${body:-nothing}"
echo "$body" | python3 -c 'import sys,json; d=json.load(sys.stdin); assert d["region"]=="smoke", d; assert d["ip"]=="Error"; assert d["hostname"]'
user=$(docker inspect -f '{{.Config.User}}' "$cid")
[ "$user" = "65532:65532" ] || { echo "image runs as $user, want 65532:65532"; exit 1; }
curl -fsS -m 2 -I "http://127.0.0.1:$port/" | head -1
echo "docker smoke: ok"
