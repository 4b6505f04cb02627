#!/usr/bin/env python3
"""Router overhead: the same origin directly, through HAProxy and through geoha's front
door, in one run on loopback, with wrk (64 connections, 10 s by default).

The origin is one `geoha api` replica. HAProxy is configured equivalently to the front
door: HTTP mode, keep-alive to the origin, a HEAD / health check, forwarded-for header,
`nbthread` = CPUs. Prints req/s and p50/p99 for each and geoha's ratio to HAProxy and
added p99 over direct. Usage:

    python3 bench/frontdoor_bench.py [--geoha target/release/geoha] [--duration 10]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import first_200, free_port, run_wrk  # noqa: E402


def start(argv, env=None):
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--geoha", default="target/release/geoha")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    a = ap.parse_args()
    if not shutil.which("haproxy") or not shutil.which("wrk"):
        raise SystemExit("needs haproxy and wrk (apt-get install haproxy wrk)")
    env = dict(os.environ, GEOHA_LOG="warn")
    tmp = tempfile.mkdtemp(prefix="geoha-fdbench-")
    procs = []
    try:
        origin = free_port()
        procs.append(start([a.geoha, "api", "--listen", f"127.0.0.1:{origin}"], env))
        first_200(origin)

        hp = free_port()
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn 4096
    nbthread {os.cpu_count()}
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{hp}
    default_backend api
backend api
    option httpchk HEAD /
    server o1 127.0.0.1:{origin} check inter 1s
""")
        procs.append(start(["haproxy", "-f", cfg, "-db"]))
        first_200(hp)

        fp = free_port()
        fcfg = os.path.join(tmp, "fd.toml")
        with open(fcfg, "w") as f:
            f.write(f"""[[listener]]
address = "127.0.0.1:{fp}"

[[route]]
origin_group = "api"

[[origin_group]]
name = "api"
[origin_group.probe]
interval = "1s"
[[origin_group.origin]]
name = "o1"
address = "127.0.0.1:{origin}"
""")
        procs.append(start([a.geoha, "frontdoor", "--config", fcfg], env))
        first_200(fp)

        rows = []
        for name, port in (("direct (geoha api)", origin), ("HAProxy", hp), ("geoha frontdoor", fp)):
            r = run_wrk(port, a.duration, a.connections)
            r["name"] = name
            rows.append(r)
        print(f"{'path':<22} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  socket errors")
        for r in rows:
            print(f"{r['name']:<22} {r['rps']:>10.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                  f"{r['non2xx']:>8}  {r['socket_errors']}")
        d, h, g = rows
        print(f"\ngeoha frontdoor / HAProxy: {g['rps'] / h['rps']:.2f}x req/s; "
              f"added p99 over direct: geoha {g['p99_ms'] - d['p99_ms']:.3f} ms, "
              f"HAProxy {h['p99_ms'] - d['p99_ms']:.3f} ms")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
