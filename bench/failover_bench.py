#!/usr/bin/env python3
"""Failover under faults: geoha's front door beside HAProxy, same replicas, same faults.

Starts `geoha up` (built-in topology), then HAProxy in front of the very same replica
links (so every lab fault hits both routers identically), tuned as well as it goes:
`inter 1s fall 2 rise 2`, `observe layer7`, `option redispatch`, `retries 2`,
`retry-on all-retryable-errors`, `timeout server 1s`. For each scenario it runs
`geoha drill` at 500 req/s against geoha's front door, then against HAProxy, and prints
failed requests, shift (fault -> no more answers from the faulted target) and p99 during
the fault for both. Usage:

    python3 bench/failover_bench.py [--geoha target/release/geoha] [--scenarios a,b,...]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCENARIOS = [
    "region-loss",
    "replica-freeze",
    os.path.join(HERE, "scenarios", "region-freeze.toml"),
    os.path.join(HERE, "scenarios", "slow-region-2s.toml"),
    "partition",
    "flapping-replica",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_cfg(port, replicas):
    servers = "\n".join(
        f"    server {r['name']} {r['link_addr']} check inter 1s fall 2 rise 2 observe layer7"
        for r in replicas
    )
    return f"""global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    option redispatch
    retries 2
    retry-on all-retryable-errors
    timeout connect 1s
    timeout client 30s
    timeout server 1s
frontend fe
    bind 127.0.0.1:{port}
    default_backend api
backend api
    balance roundrobin
    option httpchk HEAD /
{servers}
"""


def wait_for(pred, within, what):
    deadline = time.time() + within
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def drill(geoha, env, scenario, target, out_json):
    cmd = [geoha, "drill", scenario, "--quiet", "--json", out_json]
    if target:
        cmd += ["--target", target]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=180)
    with open(out_json) as f:
        return json.load(f)


def fault_summary(report):
    """Failed requests, max shift and worst p99 over the fault events (not heals/thaws)."""
    events = [e for e in report.get("events", [])
              if e.get("action", "").split()[0] not in ("heal", "thaw")]
    shift = [e.get("shift_s") for e in events if e.get("shift_s") is not None]
    p99 = [e["outage_latency_ms"]["p99"] for e in events if e.get("outage_latency_ms")]
    return {
        "failed": report["failed"],
        "sent": report["sent"],
        "shift_s": max(shift) if shift else None,
        "fault_p99_ms": max(p99) if p99 else None,
        "p99_ms": report["latency_ms"]["p99"],
    }


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}{unit}" if unit == "s" else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--geoha", default="target/release/geoha")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    ap.add_argument("--out", default=None, help="directory for the JSON reports")
    args = ap.parse_args()
    geoha = os.path.abspath(args.geoha)
    if not shutil.which("haproxy"):
        raise SystemExit("haproxy not found (apt-get install haproxy)")
    state = tempfile.mkdtemp(prefix="geoha-fobench-")
    out = args.out or state
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, GEOHA_STATE_DIR=state)
    fd_port = free_port()
    up = subprocess.Popen([geoha, "up", "--listen", f"127.0.0.1:{fd_port}"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hap = None
    try:
        wait_for(lambda: os.path.exists(os.path.join(state, "lab.json")), 30, "geoha up")
        status = json.loads(subprocess.check_output([geoha, "status", "--json"], env=env))
        hp = free_port()
        cfg = os.path.join(state, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_cfg(hp, status["replicas"]))
        hap = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(2.5)  # both routers see every replica healthy
        rows = []
        for sc in args.scenarios.split(","):
            name = os.path.basename(sc).removesuffix(".toml")
            for router, target in (("geoha", None), ("haproxy", f"http://127.0.0.1:{hp}/default/")):
                rep = drill(geoha, env, sc, target, os.path.join(out, f"{name}-{router}.json"))
                rows.append((name, router, fault_summary(rep)))
                print(f"{name:<18} {router:<8} {json.dumps(fault_summary(rep))}", flush=True)
                time.sleep(4)  # probe windows refill, ejections expire
        print()
        print(f"| scenario | router | sent | failed | shift | p99 in fault | p99 overall |")
        print(f"|---|---|---|---|---|---|---|")
        for name, router, s in rows:
            print(f"| {name} | {router} | {s['sent']} | {s['failed']} | {fmt(s['shift_s'], 's')} "
                  f"| {fmt(s['fault_p99_ms'], ' ms')} | {fmt(s['p99_ms'], ' ms')} |")
    finally:
        if hap:
            hap.send_signal(signal.SIGTERM)
            hap.wait(timeout=10)
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        if not args.out:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
