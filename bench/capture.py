#!/usr/bin/env python3
"""Capture benchmarks, with the ffmpeg CLI measured in the same run as the reference.

  1. Encoding throughput: `capture video --camera file:X.y4m` (1280x720, 600 frames made here by
     ffmpeg) against `ffmpeg -i X.y4m` with the same encoder settings (target: agent fps >= 0.9 x
     ffmpeg's).
  2. Paced 1280x720 at 30 fps from the synthetic camera for BENCH_PACED_SECS (default 60) s:
     dropped frames (target 0) and CPU seconds per second of video, beside ffmpeg encoding a
     paced lavfi test source of the same size, rate and length with the same settings.
  3. A 1920x1080 still with metrics and JPEG (cargo bench, in process): ms per still.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "kiosk-agent"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PACED = int(os.environ.get("BENCH_PACED_SECS", "60"))
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-maxrate", "4000000", "-bufsize", "8000000",
        "-g", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]


def cpu_of(cmd, **kw):
    """Wall seconds and CPU seconds (user + sys) of one command and its threads."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, **kw)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed: {p.stderr.decode()[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "capture.toml"
        cfg.write_text("[capture.video]\nwidth = 1280\nheight = 720\nfps = 30\ncrf = 23\nmax_bitrate = 4000000\n"
                       "preset = \"veryfast\"\nkeyframe_secs = 2\nmax_seconds = 600\n")
        y4m = tmp / "x.y4m"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30", "-frames:v", "600", "-pix_fmt", "yuv420p", str(y4m)], check=True)

        print("== 1. encoding throughput: 1280x720, 600 frames from Y4M, libx264 veryfast crf 23 ==")
        agent_fps, ff_fps = [], []
        for run in range(RUNS):
            wall, _, p = cpu_of([str(BIN), "--config", str(cfg), "capture", "video", "--camera", f"file:{y4m}",
                                 "--seconds", "60", "--out", str(tmp / f"a{run}.mp4"), "--json"])
            frames = json.loads(p.stdout)["frames"]
            assert frames == 600, f"agent encoded {frames} frames"
            agent_fps.append(frames / wall)
            wall, _, _ = cpu_of(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(y4m), *X264,
                                 str(tmp / f"f{run}.mp4")])
            ff_fps.append(600 / wall)
        a, f = statistics.median(agent_fps), statistics.median(ff_fps)
        print(f"  kiosk-agent capture video: {a:.1f} fps (median of {RUNS})")
        print(f"  ffmpeg -i x.y4m:           {f:.1f} fps (median of {RUNS})")
        print(f"  ratio agent / ffmpeg: {a / f:.2f}  (target >= 0.9)")

        print(f"\n== 2. paced 1280x720@30 from the synthetic camera for {PACED} s ==")
        wall, cpu, p = cpu_of([str(BIN), "--config", str(cfg), "capture", "video", "--camera", "synthetic:1280x720@30",
                               "--seconds", str(PACED), "--out", str(tmp / "paced.mp4"), "--json"])
        report = json.loads(p.stdout)
        video_secs = report["duration_secs"]
        print(f"  kiosk-agent: {report['frames']} frames, {report['dropped']} dropped, {video_secs:.2f} s of video, "
              f"{cpu / video_secs:.3f} CPU s per s of video (pattern generation included)")
        wall_f, cpu_f, _ = cpu_of(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i",
                                   "testsrc2=size=1280x720:rate=30", "-t", str(PACED), *X264, str(tmp / "paced_ff.mp4")])
        print(f"  ffmpeg -re lavfi testsrc2:  {cpu_f / PACED:.3f} CPU s per s of video (test source included)")
        print(f"  dropped frames: {report['dropped']}  (target 0)")

        print()
        subprocess.run(["cargo", "bench", "--quiet", "--locked", "-p", "kiosk-capture", "--bench", "still"], cwd=ROOT, check=True)
        print("\nsummary")
        print(f"  encode throughput vs ffmpeg  {a / f:.2f} x  (>= 0.9)  {'OK' if a / f >= 0.9 else 'MISSED'}")
        print(f"  paced 720p30 dropped frames  {report['dropped']}        (0)       {'OK' if report['dropped'] == 0 else 'MISSED'}")


if __name__ == "__main__":
    if not BIN.exists():
        sys.exit("build first: cargo build --release (bench/run does it)")
    main()
