#!/usr/bin/env bash
# Runs every built-in drill scenario against a fresh `geoha up` (built-in topology) and
# writes JSON + HTML reports and a summary to OUT (default docs/drills).
# Usage: scripts/drill-all.sh [OUT] [GEOHA_BIN]
set -euo pipefail
out=${1:-docs/drills}
bin=${2:-${GEOHA_BIN:-target/release/geoha}}
mkdir -p "$out"
state=$(mktemp -d)
export GEOHA_STATE_DIR=$state
"$bin" up >"$state/up.out" 2>"$state/up.err" &
up_pid=$!
cleanup() { kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "lab running" "$state/up.err" 2>/dev/null && break
  sleep 0.1
done
grep -q "lab running" "$state/up.err" || { cat "$state/up.err"; exit 1; }
summary="$out/summary.txt"
: >"$summary"
for s in $("$bin" drill --list | awk '{print $1}'); do
  echo "== $s" | tee -a "$summary"
  "$bin" drill "$s" --quiet --json "$out/$s.json" --html "$out/$s.html" 2>/dev/null | tee -a "$summary" || true
  # Let healed replicas settle (probe windows refill) before the next scenario.
  sleep 3
done
# A Markdown table of the fault events, for docs/benchmarks.md.
python3 - "$out" <<'PY' | tee "$out/summary.md"
import glob, json, os, sys
out = sys.argv[1]
print("| scenario | sent | failed | availability | event | recovery | shift | p99 during the fault |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    r = json.load(open(path))
    name = os.path.basename(path)[:-5]
    avail = 100.0 * r["ok"] / r["sent"] if r["sent"] else 0.0
    for e in r.get("events", []):
        if e["action"].split()[0] in ("heal", "thaw"):
            continue
        rec = "-" if e.get("recovery_s") is None else f"{e['recovery_s']:.3f} s"
        shift = "-" if e.get("shift_s") is None else f"{e['shift_s']:.3f} s"
        p99 = (e.get("outage_latency_ms") or {}).get("p99")
        p99 = "-" if p99 is None else f"{p99:.1f} ms"
        print(f"| {name} | {r['sent']} | {r['failed']} | {avail:.3f}% | {e['action']} @ {e['at_s']:.1f} s "
              f"| {rec} | {shift} | {p99} |")
PY
