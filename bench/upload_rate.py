#!/usr/bin/env python3
"""`sync.max_upload_rate` holds: a 15 MB video enrollment sent with `max_upload_rate = "2 Mbit/s"`
(250,000 bytes/s, so about 60 s), the achieved rate printed against the configured one (target:
within 10%), beside curl's own `--limit-rate 250000` to the same endpoint as the reference.

Run with `bench/run` (which builds the release binary first). BENCH_RATE_MB changes the size.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # noqa: E402  (the shared helpers: sandbox, config, files)

RATE = 250_000  # bytes per second: "2 Mbit/s"
MB = float(os.environ.get("BENCH_RATE_MB", "15"))


def main():
    if not pipeline.BIN.exists():
        sys.exit("build first: cargo build --release (bench/run does)")
    sandbox = pipeline.Sandbox()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = pipeline.write_config(tmp, sandbox.port, 'max_upload_rate = "2 Mbit/s"')
            manifest = pipeline.make_files(Path(tmp) / "files", 0, int(MB * 1_000_000))
            subprocess.run(pipeline.agent(cfg, "enroll", str(manifest)), check=True, capture_output=True)
            start = time.perf_counter()
            subprocess.run([str(pipeline.BIN), "--config", str(cfg), "sync", "--once"], check=True, capture_output=True)
            took = time.perf_counter() - start
            records = sandbox.records()
            req = records["requests"][-1]
            sent = req["video"]["size"] + sum(i["size"] * 4 // 3 for i in req["images"].values())
            ours = sent / took
            video = Path(tmp) / "files" / "video.mp4"
            ids = sandbox.create()
            url = f"{sandbox.base}/videoid/{ids['videoid_pk']}/video"
            start = time.perf_counter()
            subprocess.run(["curl", "-sS", "-o", "/dev/null", "--limit-rate", str(RATE),
                            "-F", f"video=@{video};type=video/mp4", url], check=True)
            curl_took = time.perf_counter() - start
            theirs = video.stat().st_size / curl_took
    finally:
        sandbox.stop()
    print(f"== upload rate: {MB:.0f} MB video with sync.max_upload_rate = \"2 Mbit/s\" ({RATE} B/s) ==")
    print(f"  kiosk-agent  {sent} bytes in {took:.1f} s = {ours:,.0f} B/s ({ours / RATE * 100:.1f}% of the limit; "
          "includes create and status reads)")
    print(f"  curl         --limit-rate {RATE}: {curl_took:.1f} s = {theirs:,.0f} B/s ({theirs / RATE * 100:.1f}%)")
    print(f"  ratio        kiosk-agent / curl = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
