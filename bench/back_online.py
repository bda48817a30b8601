#!/usr/bin/env python3
"""Back online means now: 50 enrollments queued while the server is down, the daemon running.

Measures, with the daemon's default backoff (base 2 s, cap 5 min) and probe cap (15 s):
  * the time from the server's return to all 50 enrollments in `in_review` (target: < 20 s on
    loopback), against draining the same 50 with the server up all along (`sync --once`),
    measured in the same run as the reference;
  * the requests the agent sent while the server was down, from its own debug log: probes and
    anything else (target: only probes, plus the attempts that found the network gone).

The outage lasts BENCH_DOWN_SECS (default 600, the issue's ten minutes). Run with `bench/run`
or directly after `cargo build --release`. Nothing here asserts a time; it prints figures.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import BIN, SAMPLES, Sandbox, free_port, write_config  # noqa: E402

COUNT = 50
DOWN = float(os.environ.get("BENCH_DOWN_SECS", "600"))


def agent(cfg, *args, **kw):
    return subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, check=True, **kw)


def enroll_all(tmp, cfg):
    for i in range(COUNT):
        d = Path(tmp) / f"e{i}"
        shutil.copytree(SAMPLES, d)
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["customer"]["email"] = f"back{i}@example.com"
        (d / "manifest.json").write_text(json.dumps(manifest))
        agent(cfg, "enroll", str(d / "manifest.json"))


def states(cfg):
    return [e["state"] for e in json.loads(agent(cfg, "queue", "list", "--json").stdout)]


def reference_drain():
    """The same 50 enrollments with the server up all along."""
    sandbox = Sandbox()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(tmp, sandbox.port)
        enroll_all(tmp, cfg)
        t = time.perf_counter()
        agent(cfg, "sync", "--once")
        took = time.perf_counter() - t
    sandbox.stop()
    return took


def back_online():
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(tmp, port)
        log_path = Path(tmp) / "daemon.log"
        env = {**os.environ, "KIOSK_AGENT_LOG": "kiosk_agent=debug"}
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([str(BIN), "--config", str(cfg), "run"], stdout=subprocess.DEVNULL,
                                      stderr=log, env=env)
        enroll_all(tmp, cfg)
        print(f"  server down for {DOWN:.0f} s with {COUNT} enrollments queued …", flush=True)
        time.sleep(DOWN)
        sandbox = Sandbox.__new__(Sandbox)
        sandbox.port = port
        sandbox.proc = subprocess.Popen([str(BIN), "sandbox", "--listen", f"127.0.0.1:{port}"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "KIOSK_AGENT_LOG": "error"})
        sandbox.proc.stdout.readline()
        back = time.perf_counter()
        while not all(s == "in_review" for s in states(cfg)):
            if time.perf_counter() - back > 600:
                sys.exit(f"not all in review after 600 s: {states(cfg)}")
            time.sleep(0.05)
        took = time.perf_counter() - back
        daemon.terminate()
        daemon.wait()
        sandbox.stop()
        log = log_path.read_text()
        offline = log.split("server reachable again")[0]
        requests = offline.count("http request")
        probes = offline.count('op="probe"')
    return took, probes, requests - probes


def main():
    if not BIN.exists():
        sys.exit(f"{BIN} missing: run `cargo build --release` (or bench/run)")
    print(f"back online: {COUNT} enrollments queued while the server is down")
    reference = reference_drain()
    took, probes, others = back_online()
    print(f"  server back → all {COUNT} in review: {took:.2f} s [target < 20 s]")
    print(f"  reference, server up all along (sync --once): {reference:.2f} s → ratio {took / reference:.2f} ×")
    print(f"  requests while down ({DOWN:.0f} s): {probes} probes ({DOWN / max(probes, 1):.1f} s apart on average), "
          f"{others} other (the attempts that found the network gone)")


if __name__ == "__main__":
    main()
