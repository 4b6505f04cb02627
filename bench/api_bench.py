#!/usr/bin/env python3
"""Benchmark `geoha api` against the reference Flask service, in one run, on loopback.

For each server: cold start to first 200 on /default/, wrk throughput and latency
(64 connections, 10 s by default), peak RSS. Prints a table and geoha's ratio to the
anchor. Usage:

    python3 bench/api_bench.py [--geoha target/release/geoha] [--duration 10] [--connections 64]
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_200(port, deadline_s=30.0):
    """Polls GET /default/ until it answers 200; returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < deadline_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /default/ HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(32):
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.0005)
    raise SystemExit(f"no answer on port {port} within {deadline_s}s")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_wrk(port, duration, connections):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency",
         f"http://127.0.0.1:{port}/default/"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_err.group(1) if sock_err else "none"}


def measure(name, argv, env, port, duration, connections):
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # first_200 returns once the port answers; cold start counts from spawn.
        first_200(port)
        cold = time.perf_counter() - started
        # Make sure it really is 200.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /default/ HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            head = s.recv(32)
            assert head.startswith(b"HTTP/1.") and b" 200 " in head, head
        result = run_wrk(port, duration, connections)
        result["rss_mib"] = peak_rss_kib(proc.pid) / 1024
        result["cold_ms"] = cold * 1000
        result["name"] = name
        return result
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--geoha", default="target/release/geoha")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    a = ap.parse_args()
    env = dict(os.environ, GEOHA_LOG="warn")
    rows = []
    port = free_port()
    rows.append(measure("geoha api", [a.geoha, "api", "--listen", f"127.0.0.1:{port}",
                                      "--ip-lookup-url", "off"], env, port, a.duration, a.connections))
    port = free_port()
    rows.append(measure("reference Flask (app.run)", [sys.executable, os.path.join(HERE, "reference_flask_app.py")],
                        dict(env, PORT=str(port)), port, a.duration, a.connections))
    print(f"{'server':<28} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13} {'cold start ms':>14} {'non-2xx':>8}")
    for r in rows:
        print(f"{r['name']:<28} {r['rps']:>10.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['rss_mib']:>13.1f} {r['cold_ms']:>14.1f} {r['non2xx']:>8}")
    g, ref = rows[0], rows[1]
    print(f"\ngeoha / reference: {g['rps'] / ref['rps']:.1f}x req/s, "
          f"p99 {g['p99_ms']:.3f} ms vs {ref['p99_ms']:.3f} ms, "
          f"RSS {g['rss_mib']:.1f} vs {ref['rss_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
