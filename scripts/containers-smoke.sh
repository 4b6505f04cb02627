#!/usr/bin/env bash
# Container mode end to end: `geoha up --containers` on a small topology with the
# static image (built by scripts/image.sh as geoha:smoke), traffic through the front
# door, engine faults (pause, network disconnect, kill) with the supervisor's restart,
# heal, then `geoha down` removes every container and network; a SIGKILLed lab's
# leftovers are removed by the next `geoha up --containers`.
# Usage: GEOHA_BIN=target/debug/geoha scripts/containers-smoke.sh [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-geoha:smoke}
bin=${GEOHA_BIN:?set GEOHA_BIN to the geoha binary}
state=$(mktemp -d)
export GEOHA_STATE_DIR=$state
env_name="ci$$"
cat >"$state/topology.toml" <<TOML
environment = "$env_name"
[frontdoor.probe]
interval = "250ms"
[[region]]
name = "east"
zones = ["1", "2"]
[[region]]
name = "west"
zones = ["1"]
TOML
up_pid=
cleanup() {
  [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
  ids=$(docker ps -aq --filter "label=geoha.lab=$env_name")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  nets=$(docker network ls -q --filter "label=geoha.lab=$env_name")
  [ -n "$nets" ] && docker network rm $nets >/dev/null
  rm -rf "$state"
}
trap cleanup EXIT

start_lab() {
  "$bin" up "$state/topology.toml" --containers --image "$image" --listen 127.0.0.1:0 --replica-port 0 \
    >"$state/up.out" 2>"$state/up.err" &
  up_pid=$!
  for _ in $(seq 1 300); do
    grep -q "lab running" "$state/up.err" 2>/dev/null && return 0
    kill -0 "$up_pid" 2>/dev/null || { cat "$state/up.err"; exit 1; }
    sleep 0.1
  done
  cat "$state/up.err"; exit 1
}
url() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frontdoor_url"])' "$state/lab.json"; }
count() { docker ps -q --filter "label=geoha.lab=$env_name" | wc -l; }
all_ok() { # N requests, all 200
  for _ in $(seq 1 "$1"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$(url)/default/")
    [ "$code" = 200 ] || { echo "got $code"; return 1; }
  done
}

start_lab
[ "$(count)" = 3 ] || { echo "want 3 containers, have $(count)"; exit 1; }
"$bin" status --once
all_ok 20
echo "pushed once, pulled by digest from each region's own registry replica"
"$bin" status --json | python3 -c '
import json, sys, urllib.request
s = json.load(sys.stdin)
regs = {r["region"]: r["url"] for r in s["registries"]}
assert set(regs) == {"east", "west"}, regs
for r in s["replicas"]:
    own = regs[r["region"]].removeprefix("http://")
    assert r["image"].startswith(own + "/") and "@sha256:" in r["image"], (r["name"], r["image"])
for region, url in regs.items():
    m = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    ok = [l for l in m.splitlines() if l.startswith("geoha_registry_http_requests_total") and "2xx" in l]
    assert ok and float(ok[0].split()[-1]) > 0, (region, ok)
print("images:", sorted({r["image"] for r in s["replicas"]}))'
echo "faults: pause, network disconnect, kill"
"$bin" fault freeze replica:east-z1-r0
"$bin" fault partition zone:east-2
"$bin" fault kill replica:west-z1-r0
[ "$(docker inspect -f '{{.State.Paused}}' "geoha-$env_name-east-z1-r0")" = true ]
[ -z "$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "geoha-$env_name-east-z2-r0")" ]
sleep 2
"$bin" status --once
restarts=$("$bin" status --json | python3 -c 'import json,sys; print({r["name"]: r["restarts"] for r in json.load(sys.stdin)["replicas"]}["west-z1-r0"])')
[ "$restarts" -ge 1 ] || { echo "killed container not restarted"; exit 1; }
all_ok 20
"$bin" fault heal region:east
sleep 1.5
"$bin" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
bad = [r["name"] for r in s["replicas"] if not r["healthy"] or r["faults"]]
assert not bad, bad'
echo "geoha deploy while west's registry replica is down: west pulls from east"
"$bin" fault kill registry:west
"$bin" deploy --version 2.0.0 --image "$image" --bake 500ms
"$bin" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
regs = {r["region"]: r["url"].removeprefix("http://") for r in s["registries"]}
up = {r["region"]: r["up"] for r in s["registries"]}
assert up == {"east": True, "west": False}, up
for r in s["replicas"]:
    assert r["version"] == "2.0.0", (r["name"], r["version"])
    assert r["image"].startswith(regs["east"] + "/"), (r["name"], r["image"])'
"$bin" fault heal registry:west
"$bin" status --json | python3 -c '
import json, sys
assert all(r["up"] for r in json.load(sys.stdin)["registries"])'
echo "geoha deploy while west's registry replica is partitioned from east: west pulls from east"
# A new digest (a label on top of the same image), so west's replica cannot have it.
printf 'FROM %s\nLABEL geoha.smoke=partition\n' "$image" | docker build -q -t "$image-v3" - >/dev/null
"$bin" fault partition registry:west
"$bin" status --once | grep -q "partition (blackhole)"
"$bin" deploy --version 3.0.0 --image "$image-v3" --bake 500ms
"$bin" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
regs = {r["region"]: r["url"].removeprefix("http://") for r in s["registries"]}
for r in s["replicas"]:
    assert r["version"] == "3.0.0", (r["name"], r["version"])
    want = regs["east"]
    assert r["image"].startswith(want + "/"), (r["name"], r["image"])'
"$bin" fault heal registry:west
# Healed: anti-entropy brings the new digest to west.
digest=$("$bin" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["replicas"][0]["image"].split("@")[1])')
west=$("$bin" status --json | python3 -c 'import json,sys; print([r["url"] for r in json.load(sys.stdin)["registries"] if r["region"]=="west"][0])')
for i in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I "$west/v2/geoha-api/manifests/$digest")" = 200 ] && break
  [ "$i" = 100 ] && { echo "west never got $digest after heal"; exit 1; }
  sleep 0.2
done
echo "down removes everything"
"$bin" down
wait "$up_pid" || true
up_pid=
[ "$(docker ps -aq --filter "label=geoha.lab=$env_name" | wc -l)" = 0 ]
[ "$(docker network ls -q --filter "label=geoha.lab=$env_name" | wc -l)" = 0 ]
echo "SIGKILLed lab: the next up cleans its leftovers"
start_lab
kill -KILL "$up_pid"; wait "$up_pid" 2>/dev/null || true; up_pid=
rm -f "$state/lab.json"
start_lab
[ "$(count)" = 3 ] || { echo "want 3 containers after restart, have $(count)"; exit 1; }
all_ok 5
"$bin" down
wait "$up_pid" || true
up_pid=
docker rmi "$image-v3" >/dev/null 2>&1 || true
echo "containers smoke: ok"
