#!/usr/bin/env python3
"""The local API under load: 50 concurrent API clients and 5 preview viewers for 60 s against
`kiosk-agent run` (synthetic cameras, the built-in sandbox), with the daemon's and the capture
service's memory sampled throughout.

Prints requests per second, latency percentiles, errors, preview frames per viewer, and the RSS
of both processes at the start and the end of the load (target: no growth beyond noise). The
reference is curl: the same `GET /v1/status` timed with curl in the same run.

Run with `bench/run` (which builds the release binary first). BENCH_API_SECS changes the length.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "kiosk-agent"
SECS = float(os.environ.get("BENCH_API_SECS", "60"))
CLIENTS, VIEWERS = 50, 5
TOKEN = "bench-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                status = (p / "status").read_text()
            except OSError:
                continue
            ppid = next(l.split()[1] for l in status.splitlines() if l.startswith("PPid:"))
            if int(ppid) == pid:
                out.append(int(p.name))
    return out


def main():
    if not BIN.exists():
        sys.exit("build first: cargo build --release (bench/run does)")
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-bench-api-"))
    sandbox_port, api_port = free_port(), free_port()
    sandbox = subprocess.Popen([str(BIN), "sandbox", "--listen", f"127.0.0.1:{sandbox_port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sandbox.stdout.readline()
    token_file = tmp / "api.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = tmp / "kiosk-agent.toml"
    config.write_text(
        f'[oneshot]\nbase_url = "http://127.0.0.1:{sandbox_port}/oneshot/api/v1"\n'
        'registration_authority = "139"\nprofile = "PFnubeQAFCiudadano"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken_file = "api.token"\n'
        '[storage]\ndata_dir = "data"\nmin_free_bytes = 0\n'
        '[cameras.document]\nsource = "synthetic:1280x720@30"\n[cameras.face]\nsource = "synthetic:1280x720@30"\n')
    subprocess.run([str(BIN), "--config", str(config), "key", "init"], check=True, capture_output=True)
    daemon = subprocess.Popen([str(BIN), "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "KIOSK_AGENT_LOG": "warn"})
    base = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    # Start the capture service and both cameras before measuring.
    for role in ("document", "face"):
        r = urllib.request.urlopen(urllib.request.Request(base + f"/v1/cameras/{role}/preview.mjpg", headers=headers), timeout=10)
        r.read(1000)
        r.close()
    time.sleep(1)
    service = children(daemon.pid)
    service_pid = service[0] if service else None

    stop = time.monotonic() + SECS
    latencies, errors, frames = [], [0], [0] * VIEWERS
    lock = threading.Lock()
    paths = ["/v1/status", "/v1/enrollments", "/v1/cameras", "/healthz"]

    def client(i):
        n = 0
        while time.monotonic() < stop:
            path = paths[(i + n) % len(paths)]
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                if not ok:
                    errors[0] += 1
            n += 1

    def viewer(i):
        role = ("document", "face")[i % 2]
        req = urllib.request.Request(base + f"/v1/cameras/{role}/preview.mjpg", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                while time.monotonic() < stop:
                    line = r.readline()
                    if not line:
                        with lock:
                            errors[0] += 1
                        return
                    if line.startswith(b"Content-Length:"):
                        length = int(line.split(b":")[1])
                        r.readline()
                        r.read(length)
                        frames[i] += 1
        except OSError:
            with lock:
                errors[0] += 1

    samples = []

    def sampler():
        while time.monotonic() < stop:
            samples.append((rss_mib(daemon.pid), rss_mib(service_pid) if service_pid else 0.0))
            time.sleep(1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=viewer, args=(i,)) for i in range(VIEWERS)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Reference: curl, the same request, one at a time.
    curl = []
    for _ in range(50):
        t = time.perf_counter()
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}", base + "/v1/status"], check=True)
        curl.append(time.perf_counter() - t)
    ours = []
    for _ in range(50):
        t = time.perf_counter()
        urllib.request.urlopen(urllib.request.Request(base + "/v1/status", headers=headers)).read()
        ours.append(time.perf_counter() - t)

    daemon.terminate()
    daemon.wait(timeout=20)
    sandbox.terminate()

    # Memory after warm-up (the first 10 s: allocator arenas, decoder and encoder buffers) and
    # at the end; growth between those two is what would be a leak.
    warm = samples[10:15] or samples
    timeline = ", ".join(f"{s[0]:.0f}/{s[1]:.0f}" for s in samples[::10])
    lat = sorted(latencies)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    first = samples[:5] or samples
    last = samples[-5:] or samples
    avg = lambda xs, k: statistics.mean(x[k] for x in xs)
    print(f"API load: {CLIENTS} clients + {VIEWERS} preview viewers for {SECS:.0f} s")
    print(f"  requests      {len(lat)} ({len(lat) / SECS:.0f}/s), errors {errors[0]}")
    print(f"  latency       p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {q(1.0):.1f} ms")
    print(f"  preview       {', '.join(str(f) for f in frames)} frames per viewer ({statistics.mean(frames) / SECS:.1f} fps each)")
    print(f"  daemon RSS    {avg(first, 0):.1f} MiB at the start, {avg(warm, 0):.1f} after 10 s, {avg(last, 0):.1f} at the end (peak {max(s[0] for s in samples):.1f})")
    print(f"  capture RSS   {avg(first, 1):.1f} MiB at the start, {avg(warm, 1):.1f} after 10 s, {avg(last, 1):.1f} at the end (peak {max(s[1] for s in samples):.1f})")
    print(f"  RSS every 10 s (daemon/capture MiB): {timeline}")
    print(f"  GET /v1/status alone: median {statistics.median(ours) * 1000:.2f} ms in Python vs curl {statistics.median(curl) * 1000:.2f} ms "
          f"(curl includes its process start; ratio {statistics.median(ours) / statistics.median(curl):.2f})")


if __name__ == "__main__":
    main()
