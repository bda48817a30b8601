#!/usr/bin/env python3
"""A fleet on an existing engine: N daemons (default 200) behind one One-Shot server (the
sandbox) that goes down for ten minutes, scraped by a real Prometheus with the shipped
`config/prometheus/prometheus.yml` and `alerts.yml` (only their paths changed: the token file,
the file_sd directory).

Each agent runs `kiosk-agent run` on its own data directory and API port, on default settings
(capture service not used, the same API token for all). While the server is down, every agent
queues BENCH_FLEET_ENROLLMENTS enrollments (default 2): one each at once, the rest spread over
the first half of the outage. The bench prints:

  * the request rate the server sees after its return, per second, against the bound the
    design gives: each agent learns of the return from its own probe, and probes are spaced by
    "equal jitter" (uniform in [cap/2, cap], cap = sync.probe_cap_secs, 15 s), independently
    from one agent to the next and well mixed after minutes of probing. So the time from the
    return to an agent's first contact has a density of at most 1/E[gap] = 1/(0.75 cap): on
    average at most N/(0.75 cap) agents come back per second, each sending its own queue. The
    bound is twice that mean (the return traffic R spread at R/(0.75 cap) per second, times 2):
    with 200 agents, a second above it needs about 36 agents in one second where 18 are
    expected, a binomial tail of about 4e-5 for a given second. It comes from the spacing,
    not from the server being fast, and it is a statement about a large fleet: with 10
    agents, two or three landing in the same second are ordinary;
  * the time from the server's return until every enrollment is in review (VIDEOREVIEW on
    the server), against the probe window (target: within cap + 30 s);
  * when the fleet alerts (KioskFleetOffline, KioskFleetEvidenceWaiting) fire and resolve in
    Prometheus itself (its /api/v1/alerts), and how many series and how much memory the
    Prometheus holds;
  * each agent's resident memory and CPU time, idle through the outage and over the return;
  * that BENCH_FLEET_IDLE more agents (default N/10), which enroll nothing, report the outage
    too (their heartbeat probes, sync.heartbeat_secs), as Prometheus sees it before the return.

Needs `prometheus` (Debian's package; bench/run installs it) and a release build. Environment:
BENCH_FLEET_AGENTS, BENCH_FLEET_DOWN_SECS (600), BENCH_FLEET_ENROLLMENTS. Nothing here asserts a
time; it prints figures.
"""
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import BIN, ROOT, SAMPLES, free_port  # noqa: E402

AGENTS = int(os.environ.get("BENCH_FLEET_AGENTS", "200"))
DOWN = float(os.environ.get("BENCH_FLEET_DOWN_SECS", "600"))
PER_AGENT = int(os.environ.get("BENCH_FLEET_ENROLLMENTS", "2"))
IDLE = int(os.environ.get("BENCH_FLEET_IDLE", str(AGENTS // 10)))
PROBE_CAP = 15.0  # sync.probe_cap_secs on defaults
FLEET_ALERTS = ("KioskFleetOffline", "KioskFleetEvidenceWaiting")
TICK = os.sysconf("SC_CLK_TCK")


# Every process the bench starts, so that any way out (a failed wait's sys.exit included)
# stops them instead of leaving 200 daemons and a Prometheus behind.
STARTED = []


def spawn(args, **kw):
    proc = subprocess.Popen(args, **kw)
    STARTED.append(proc)
    return proc


@contextlib.contextmanager
def stopping_all():
    """Stops every started process on the way out, before the temporary directory goes."""
    try:
        yield
    finally:
        stop_all()


def stop_all():
    for proc in STARTED:
        if proc.poll() is None:
            proc.terminate()
    for proc in STARTED:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status_kib(pid, *keys):
    """The given /proc/PID/status fields in KiB (VmRSS, VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return tuple(int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1)) for k in keys)


def get_json(url, token=None, timeout=5):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as answer:
        return json.load(answer)


def answers(url, token=None):
    try:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        urllib.request.urlopen(req, timeout=2).read()
        return True
    except OSError:
        return False


def wait_for(check, what, limit=60):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"fleet: {what} not ready after {limit} s")
        time.sleep(0.1)


class Agent:
    def __init__(self, root, index, server_port, token_file, kind="kiosk"):
        self.name = f"{kind}-{index:03d}"
        self.dir = Path(root) / self.name
        self.dir.mkdir()
        self.port = free_port()
        self.config = self.dir / "kiosk-agent.toml"
        # Defaults everywhere but where this kiosk keeps its data and answers its API.
        self.config.write_text(f"""[oneshot]
base_url = "http://127.0.0.1:{server_port}/oneshot/api/v1"
registration_authority = "139"
profile = "PFnubeQAFCiudadano"
[storage]
data_dir = "data"
min_free_bytes = 0
[api]
listen = "127.0.0.1:{self.port}"
token_file = "{token_file}"
""")
        subprocess.run([str(BIN), "--config", str(self.config), "key", "init"], capture_output=True, check=True)
        self.log = open(self.dir / "daemon.log", "w")
        self.proc = spawn([str(BIN), "--config", str(self.config), "run"], stdout=subprocess.DEVNULL,
                          stderr=self.log, env={**os.environ, "KIOSK_AGENT_LOG": "kiosk_agent=warn"})

    def enroll(self, n):
        d = self.dir / f"e{n}"
        shutil.copytree(SAMPLES, d)
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["customer"]["email"] = f"{self.name}-{n}@example.com"
        (d / "manifest.json").write_text(json.dumps(manifest))
        subprocess.run([str(BIN), "--config", str(self.config), "enroll", str(d / "manifest.json")],
                       capture_output=True, check=True)

    def cpu_secs(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def memory_kib(self):
        return status_kib(self.proc.pid, "VmRSS", "VmHWM")

    def standby_kib(self):
        """RSS and private (anonymous) memory of the agent's probe standby, (0, 0) if none."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == self.proc.pid and b"probe-standby" in (entry / "cmdline").read_bytes():
                    return status_kib(int(entry.name), "VmRSS", "RssAnon")
        return (0, 0)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


class Prometheus:
    """Debian's Prometheus on the shipped configuration, its paths pointed at this run."""

    def __init__(self, root, agents, token_file):
        conf = Path(root) / "prometheus"
        (conf / "kiosks").mkdir(parents=True)
        shipped = (ROOT / "config/prometheus/prometheus.yml").read_text()
        for old, new in (("/etc/prometheus/kiosk-agent.token", str(token_file)),
                         ("/etc/prometheus/kiosks/*.yml", str(conf / "kiosks/*.yml"))):
            if shipped.count(old) != 1:
                sys.exit(f"fleet: config/prometheus/prometheus.yml no longer names {old} once")
            shipped = shipped.replace(old, new)
        (conf / "prometheus.yml").write_text(shipped)
        shutil.copy(ROOT / "config/prometheus/alerts.yml", conf / "alerts.yml")
        (conf / "kiosks/fleet.yml").write_text("".join(
            f'- targets: ["127.0.0.1:{a.port}"]\n  labels: {{kiosk: "{a.name}"}}\n' for a in agents))
        check = subprocess.run(["promtool", "check", "config", str(conf / "prometheus.yml")], capture_output=True)
        if check.returncode:
            sys.exit(f"fleet: promtool refuses the bench's copy of the configuration:\n{check.stdout.decode()}")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(["prometheus", f"--config.file={conf / 'prometheus.yml'}",
                           f"--storage.tsdb.path={conf / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                          stdout=subprocess.DEVNULL, stderr=open(conf / "prometheus.log", "w"))
        wait_for(lambda: answers(self.base + "/-/ready"), "prometheus")

    def query(self, expr):
        url = self.base + "/api/v1/query?query=" + urllib.request.quote(expr)
        result = get_json(url)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self):
        return {a["labels"]["alertname"] for a in get_json(self.base + "/api/v1/alerts")["data"]["alerts"]
                if a["state"] == "firing"}

    def rss_mib(self):
        return status_kib(self.proc.pid, "VmRSS")[0] / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class AlertWatch(threading.Thread):
    """Polls Prometheus's alerts every 2 s and notes when each fleet alert fires and resolves."""

    def __init__(self, prometheus):
        super().__init__(daemon=True)
        self.prometheus, self.fired, self.resolved, self.done = prometheus, {}, {}, threading.Event()

    def run(self):
        while not self.done.wait(2):
            try:
                now, firing = time.time(), self.prometheus.firing()
            except OSError:
                continue
            for name in FLEET_ALERTS:
                if name in firing:
                    self.fired.setdefault(name, now)
                    self.resolved.pop(name, None)
                elif name in self.fired:
                    self.resolved.setdefault(name, now)


def main():
    if not BIN.exists():
        sys.exit(f"{BIN} missing: run `cargo build --release` (or bench/run)")
    if not shutil.which("prometheus"):
        sys.exit("prometheus missing: scripts/setup-debian bench installs it")
    total = AGENTS * PER_AGENT
    print(f"fleet: {AGENTS} agents on defaults, one server down for {DOWN:.0f} s while they queue "
          f"{total} enrollments, scraped by Prometheus (shipped configuration and alerts)")
    with tempfile.TemporaryDirectory() as tmp, stopping_all():
        server_port = free_port()
        server = spawn([str(BIN), "sandbox", "--listen", f"127.0.0.1:{server_port}"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "KIOSK_AGENT_LOG": "error"})
        server.stdout.readline()
        control = f"http://127.0.0.1:{server_port}/_sandbox"
        token = secrets.token_hex(32)
        token_file = Path(tmp) / "api.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)

        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            agents = list(pool.map(lambda i: Agent(tmp, i, server_port, token_file), range(1, AGENTS + 1)))
            idle = list(pool.map(lambda i: Agent(tmp, i, server_port, token_file, "idle"), range(1, IDLE + 1)))
        for a in agents + idle:
            wait_for(lambda: answers(f"http://127.0.0.1:{a.port}/metrics", token), a.name)
        print(f"  {AGENTS} + {IDLE} idle daemons up in {time.perf_counter() - started:.1f} s")
        prometheus = Prometheus(tmp, agents + idle, token_file)
        watch = AlertWatch(prometheus)
        watch.start()

        # The outage: the server's listening socket closes (connections refused) for DOWN s.
        urllib.request.urlopen(urllib.request.Request(f"{control}/offline?secs={DOWN}", method="POST")).read()
        down_at = time.time()
        cpu_start = [a.cpu_secs() for a in agents]
        time.sleep(0.5)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda a: a.enroll(0), agents))
        first_round = time.time() - down_at
        rest = [(a, n) for n in range(1, PER_AGENT) for a in agents]
        for i, (a, n) in enumerate(rest):
            # Spread over the first half of the outage, as customers keep coming.
            time.sleep(max(0.0, down_at + first_round + (DOWN / 2 - first_round) * i / max(len(rest), 1) - time.time()))
            a.enroll(n)
        print(f"  {total} enrollments queued while the server was down "
              f"({AGENTS} in the first {first_round:.0f} s, the rest by {time.time() - down_at:.0f} s)")

        # Just before the return: what Prometheus knows of the kiosks that had nothing to send.
        time.sleep(max(0.0, down_at + DOWN - 5 - time.time()))
        idle_offline = prometheus.query('count(kiosk_agent_online{instance=~"idle-.*"} == 0)') or 0
        # The return: wait for the socket to answer again.
        time.sleep(max(0.0, down_at + DOWN - 1 - time.time()))
        wait_for(lambda: answers(f"{control}/traffic"), "the server's return", limit=30)
        back = time.time()
        cpu_back = [a.cpu_secs() for a in agents]
        in_review_at = None
        while in_review_at is None:
            received = get_json(f"{control}/requests")
            records = received["requests"]
            if sum(r["status"] == "VIDEOREVIEW" for r in records) >= total:
                in_review_at = time.time()
            elif time.time() - back > 900:
                sys.exit(f"fleet: only {sum(r['status'] == 'VIDEOREVIEW' for r in records)} of {total} "
                         "in review 900 s after the server's return")
            else:
                time.sleep(0.25)
        cpu_end = [a.cpu_secs() for a in agents]
        creates = received["creates"]

        # The agents' own view, then the alerts' resolution (next scrape and evaluation).
        local = 0
        for a in agents:
            for line in urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{a.port}/metrics", headers={"Authorization": f"Bearer {token}"})).read().decode().splitlines():
                if line.startswith('kiosk_agent_enrollments{state="in_review"}'):
                    local += int(float(line.split()[-1]))
        deadline = time.time() + 300
        while any(name in watch.fired and name not in watch.resolved for name in FLEET_ALERTS) and time.time() < deadline:
            time.sleep(2)
        watch.done.set()
        # None until the first scrape (a run shorter than the scrape interval).
        series = prometheus.query('count({job="kiosk-agent"})') or 0
        scrape = prometheus.query('avg(scrape_duration_seconds{job="kiosk-agent"})') or 0
        prom_rss = prometheus.rss_mib()
        memory = [a.memory_kib() for a in agents]
        standbys = [a.standby_kib() for a in agents]
        traffic = {int(s): n for s, n in get_json(f"{control}/traffic")["per_second"].items()}
        for a in agents + idle:
            a.stop()
        prometheus.stop()
        server.terminate()
        server.wait()

    after = {s: n for s, n in traffic.items() if s >= int(back)}
    returned = sum(after.values())
    peak_second, peak = max(after.items(), key=lambda kv: kv[1]) if after else (0, 0)
    mean = returned / (0.75 * PROBE_CAP)
    bound = 2 * mean
    window5 = max((sum(after.get(s, 0) for s in range(t, t + 5)) / 5 for t in after), default=0)
    took = in_review_at - back
    during = sum(n for s, n in traffic.items() if down_at + 1 < s < back - 1)
    print(f"  server back → all {total} in review (VIDEOREVIEW): {took:.1f} s "
          f"[target ≤ {PROBE_CAP + 30:.0f} s: one probe window plus the uploads]; "
          f"{creates} creates for {total} enrollments; {local} in review by the agents' own metrics")
    print(f"  requests the server saw while down: {during} (probes find the socket closed); after its return: "
          f"{returned} ({returned / total:.1f} per enrollment, over {max(after) - min(after) + 1 if after else 0} s)")
    print(f"  peak second after the return: {peak} requests, {peak_second - int(back)} s after it "
          f"[bound ≤ {bound:.0f}/s: twice the spacing's mean of {mean:.0f}/s ({returned} over 0.75 × "
          f"{PROBE_CAP:.0f} s)] → {peak / bound:.2f} of the bound; busiest 5 s: {window5:.0f}/s")
    for name in FLEET_ALERTS:
        fired = watch.fired.get(name)
        resolved = watch.resolved.get(name)
        print(f"  alert {name}: " + (f"fired {fired - down_at:.0f} s into the outage, " if fired else "never fired, ")
              + (f"resolved {resolved - back:.0f} s after the return" if resolved else "not resolved"))
    print(f"  idle kiosks (nothing queued) seen offline by Prometheus 5 s before the return: "
          f"{idle_offline:.0f} of {IDLE} (an idle kiosk learns of an outage from its heartbeat, 150–300 s)")
    print(f"  Prometheus: {series:.0f} series for {AGENTS + IDLE} kiosks ({series / (AGENTS + IDLE):.0f} each), "
          f"scrape {scrape * 1000:.1f} ms on average, RSS {prom_rss:.0f} MiB")
    rss = [m[0] / 1024 for m in memory]
    hwm = [m[1] / 1024 for m in memory]
    idle = [(b - s) / (back - down_at) * 100 for s, b in zip(cpu_start, cpu_back)]
    drain = [(e - b) * 1000 for b, e in zip(cpu_back, cpu_end)]
    print(f"  per agent: RSS median {statistics.median(rss):.1f} MiB (max {max(rss):.1f}, peak {max(hwm):.1f}); "
          f"CPU through the outage (woken by enrollments, probing) {statistics.median(idle):.3f} % of a core "
          f"(median; the whole fleet {sum(idle):.1f} %), over the return {statistics.median(drain):.0f} ms "
          f"(median, max {max(drain):.0f}; the kernel counts in {1000 // TICK} ms ticks)")
    waiting = [s for s in standbys if s[0]]
    if waiting:
        print(f"  beside each agent, its probe standby (FFmpeg linked, waiting for a video; {len(waiting)} of "
              f"{AGENTS} seen): RSS median {statistics.median(s[0] for s in waiting) / 1024:.1f} MiB, of which "
              f"{statistics.median(s[1] for s in waiting) / 1024:.1f} MiB its own (the rest FFmpeg's libraries, "
              f"shared between all of them)")


if __name__ == "__main__":
    main()
