#!/usr/bin/env bash
# Interop with real clients against a `geoha registry` on loopback:
#   skopeo: push (Docker and OCI formats), pull to an OCI layout, cross-repo copy,
#           list-tags, delete;
#   docker: login (basic and token), push, pull of an image built FROM scratch.
# Usage: crates/registry/scripts/interop.sh [path/to/geoha]   (default target/debug/geoha)
# Needs skopeo (Debian `skopeo`); the docker part runs only when a Docker Engine answers.
# Prints "N passed, M failed" last and exits non-zero on any failure.
set -u
GEOHA=${1:-target/debug/geoha}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
passed=0
failed=0
check() { # name, command...
    local name=$1; shift
    if "$@" >"$WORK/last.log" 2>&1; then passed=$((passed + 1)); echo "ok   $name"
    else failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$WORK/last.log" | tail -5; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # config file; waits until /v2/ answers (bounded)
    "$GEOHA" registry --config "$1" >>"$WORK/registry.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://$ADDR/v2/" && return 0
        sleep 0.1
    done
    echo "registry did not start"; cat "$WORK/registry.log"; exit 1
}
stop_last() { local p=${PIDS[-1]}; kill "$p"; wait "$p" 2>/dev/null; unset 'PIDS[-1]'; }

# --- an open registry, for skopeo ---
PORT=$(free_port); ADDR=127.0.0.1:$PORT
cat >"$WORK/open.toml" <<TOML
replica_id = "interop"
listen = "$ADDR"
storage = "$WORK/open-data"
TOML
start "$WORK/open.toml"
mkdir -p "$WORK/img"
echo "geoha interop $(date +%s%N)" >"$WORK/img/hello.txt"
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' >"$WORK/img/Dockerfile"
# A source image as an OCI layout, made without any registry: one file layer.
SRC="$WORK/src-layout"
if command -v skopeo >/dev/null; then
    tar -C "$WORK/img" -cf "$WORK/layer.tar" hello.txt
    python3 - "$WORK/layer.tar" "$SRC" <<'PY'
import hashlib, json, os, sys
layer, out = sys.argv[1], sys.argv[2]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return {"digest": f"sha256:{d}", "size": len(b)}
l = put(open(layer, "rb").read())
diff = l["digest"]
cfg = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}, "config": {}}).encode())
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"),
     "layers": [dict(l, mediaType="application/vnd.oci.image.layer.v1.tar")]}
md = put(json.dumps(m).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(md, mediaType=m["mediaType"], annotations={"org.opencontainers.image.ref.name": "v1"})]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
    S="skopeo --insecure-policy"
    # --preserve-digests: no recompression on the way, so the bytes can be compared.
    check "skopeo push (OCI)"         $S copy --preserve-digests --dest-tls-verify=false "oci:$SRC:v1" "docker://$ADDR/interop/oci:v1"
    check "skopeo push (Docker v2s2)" $S copy --format v2s2 --dest-tls-verify=false "oci:$SRC:v1" "docker://$ADDR/interop/docker:v1"
    check "skopeo pull to OCI layout" $S copy --src-tls-verify=false "docker://$ADDR/interop/oci:v1" "oci:$WORK/pulled:v1"
    LAYER=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
    MANIFEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$SRC/index.json")
    check "manifest kept byte-for-byte" bash -c "cmp <($S inspect --raw --tls-verify=false docker://$ADDR/interop/oci:v1) $SRC/blobs/sha256/$MANIFEST"
    check "skopeo pull to dir:"       $S copy --src-tls-verify=false "docker://$ADDR/interop/oci:v1" "dir:$WORK/dir"
    check "pulled layer is intact"    cmp "$WORK/dir/$LAYER" "$WORK/layer.tar"
    check "skopeo copy across repos"  $S copy --src-tls-verify=false --dest-tls-verify=false "docker://$ADDR/interop/oci:v1" "docker://$ADDR/interop/copy:v1"
    check "skopeo inspect"            $S inspect --tls-verify=false "docker://$ADDR/interop/copy:v1"
    check "skopeo list-tags"          bash -c "$S list-tags --tls-verify=false docker://$ADDR/interop/oci | grep -q '\"v1\"'"
    check "skopeo delete"             $S delete --tls-verify=false "docker://$ADDR/interop/docker:v1"
    check "deleted is gone"           bash -c "! $S inspect --tls-verify=false docker://$ADDR/interop/docker:v1"
else
    echo "skip skopeo: not installed (apt-get install skopeo)"
fi
stop_last

# --- a secured registry, for docker login ---
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    if command -v htpasswd >/dev/null; then HASH=$(htpasswd -nbB alice s3cret)
    else HASH="alice:$(python3 -c 'import bcrypt; print(bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode())' 2>/dev/null)"; fi
    if [ "$HASH" = "alice:" ]; then
        echo "skip docker: need htpasswd (apache2-utils) or python3-bcrypt for a bcrypt hash"
    else
        echo "$HASH" >"$WORK/htpasswd"
        for mode in basic token; do
            PORT=$(free_port); ADDR=127.0.0.1:$PORT
            {
                echo "replica_id = \"interop\""; echo "listen = \"$ADDR\""; echo "storage = \"$WORK/$mode-data\""
                echo "htpasswd = \"$WORK/htpasswd\""
                if [ $mode = token ]; then echo "[token]"; echo "secret = \"interop secret of 16+ bytes\""; fi
            } >"$WORK/$mode.toml"
            start "$WORK/$mode.toml"
            IMG=$ADDR/interop/$mode:v1
            check "docker build FROM scratch ($mode)" docker build -q -t "$IMG" "$WORK/img"
            check "docker push refused before login ($mode)" bash -c "! docker push $IMG"
            check "docker login ($mode)" bash -c "echo s3cret | docker login -u alice --password-stdin $ADDR"
            check "docker push ($mode)" docker push "$IMG"
            docker rmi "$IMG" >/dev/null 2>&1
            check "docker pull ($mode)" docker pull "$IMG"
            docker logout "$ADDR" >/dev/null 2>&1
            docker rmi "$IMG" >/dev/null 2>&1
            stop_last
        done
    fi
else
    echo "skip docker: no Docker Engine"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
