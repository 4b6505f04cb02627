#!/usr/bin/env bash
# Side-by-side benchmark: geoha registry vs CNCF distribution (Debian `docker-registry`),
# same client (skopeo), same generated images, filesystem storage, loopback.
#   push/pull MB/s for 1, 10 and 100 MB layers; an image of 20 small layers;
#   manifest GET by tag req/s (wrk); 8 concurrent pushes.
# Usage: [ROUNDS=n] crates/registry/scripts/bench.sh [path/to/geoha] [path/to/docker-registry]
# Build geoha with `cargo build --release` first: debug numbers mean nothing.
# Prints one line per measurement and the ratio geoha/distribution (higher is better).
# ROUNDS (default 1) repeats each push/pull with a fresh image per round, alternating
# which registry goes first, and reports the median: a single 1 MB push on a busy
# machine swings by a factor of two either way.
set -eu
GEOHA=${1:-target/release/geoha}
DIST=${2:-/usr/bin/docker-registry}
ROUNDS=${ROUNDS:-1}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
for tool in skopeo wrk python3 curl; do
    command -v $tool >/dev/null || { echo "bench needs $tool"; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://$1/v2/" && return 0; sleep 0.1; done; echo "$1 did not start"; exit 1; }

G=127.0.0.1:$(free_port)
printf 'replica_id = "bench"\nlisten = "%s"\nstorage = "%s/geoha"\n' "$G" "$WORK" >"$WORK/geoha.toml"
"$GEOHA" registry --config "$WORK/geoha.toml" >"$WORK/geoha.log" 2>&1 &
PIDS+=($!)
D=127.0.0.1:$(free_port)
cat >"$WORK/dist.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/dist}, delete: {enabled: true}}
http: {addr: $D}
YML
"$DIST" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
PIDS+=($!)
wait_up "$G"
wait_up "$D"

# OCI layouts with random (incompressible) layers, made once and pushed to both.
mk_image() { # dir, layer sizes in bytes...
    python3 - "$@" <<'PY'
import hashlib, json, os, sys
out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return {"digest": f"sha256:{d}", "size": len(b)}
layers = [put(os.urandom(n)) for n in sizes]
cfg = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode())
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"),
     "layers": [dict(l, mediaType="application/vnd.oci.image.layer.v1.tar") for l in layers]}
md = put(json.dumps(m).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(md, mediaType=m["mediaType"], annotations={"org.opencontainers.image.ref.name": "v1"})]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
}
MB=$((1024 * 1024))
for r in $(seq 1 "$ROUNDS"); do
    mk_image "$WORK/img1_$r" $((1 * MB))
    mk_image "$WORK/img10_$r" $((10 * MB))
    mk_image "$WORK/img100_$r" $((100 * MB))
    mk_image "$WORK/img20x_$r" $(for _ in $(seq 20); do echo 65536; done)
done
for i in $(seq 1 8); do mk_image "$WORK/par$i" $((10 * MB)); done

S="skopeo --insecure-policy"
now() { date +%s.%N; }
secs() { python3 -c "print(max($2 - $1, 1e-6))"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
report() { # name, unit, geoha value, dist value
    printf '%-34s geoha %10.1f %-6s distribution %10.1f %-6s ratio %s\n' "$1" "$3" "$2" "$4" "$2" "$(ratio "$3" "$4")"
}
push() { $S copy -q --preserve-digests --dest-tls-verify=false "oci:$2:v1" "docker://$1/bench/$3:v1"; }
pull() { rm -rf "$WORK/pull"; $S copy -q --src-tls-verify=false "docker://$1/bench/$2:v1" "dir:$WORK/pull"; }

median() { python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "$@"; }

for img in img1 img10 img100 img20x; do
    declare -A rates=()
    for r in $(seq 1 "$ROUNDS"); do
        bytes=$(du -sb "$WORK/${img}_$r/blobs" | cut -f1)
        mbs=$(python3 -c "print($bytes / $MB)")
        order=("$G" "$D")
        [ $((r % 2)) -eq 0 ] && order=("$D" "$G")
        for reg in "${order[@]}"; do
            t0=$(now); push "$reg" "$WORK/${img}_$r" "${img}_$r"; t1=$(now)
            rates[push$reg]+=" $(python3 -c "print($mbs / $(secs "$t0" "$t1"))")"
            t0=$(now); pull "$reg" "${img}_$r"; t1=$(now)
            rates[pull$reg]+=" $(python3 -c "print($mbs / $(secs "$t0" "$t1"))")"
        done
    done
    # shellcheck disable=SC2086 # word splitting of the rate lists is intended
    for op in push pull; do
        report "$op $img" MB/s "$(median ${rates[$op$G]})" "$(median ${rates[$op$D]})"
    done
    unset rates
done

declare -A par=()
for reg in "$G" "$D"; do
    t0=$(now)
    for i in $(seq 1 8); do push "$reg" "$WORK/par$i" "par$i" & done
    wait $(jobs -p | grep -v -F "$(printf '%s\n' "${PIDS[@]}")") 2>/dev/null || true
    t1=$(now)
    par[$reg]=$(python3 -c "print(80 / $(secs "$t0" "$t1"))")
done
report "8 concurrent pushes (10 MB each)" MB/s "${par[$G]}" "${par[$D]}"

declare -A rps=()
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
for reg in "$G" "$D"; do
    rps[$reg]=$(wrk -t2 -c16 -d5s -H "$ACCEPT" "http://$reg/v2/bench/img1_1/manifests/v1" | awk '/Requests\/sec/ {print $2}')
done
report "manifest GET by tag" req/s "${rps[$G]}" "${rps[$D]}"
