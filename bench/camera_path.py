#!/usr/bin/env python3
"""The camera path, as numbers: a still and a 10 s clip, from the synthetic source on the host
and from vivid's V4L2 webcam in the VM (scripts/vivid), each beside the ffmpeg CLI doing the
same job in the same run: wall time, CPU time, and both per frame.

  python3 bench/camera_path.py          the host half, then the VM half (needs root for the VM)
  python3 bench/camera_path.py --here   only where it runs (the VM half runs itself this way)

Under CPU emulation (no KVM here) vivid delivers fewer frames than asked: the VM's figures are
for comparing runs and the agent with ffmpeg there, not with the host's. Nothing here asserts a
time; it prints figures.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "kiosk-agent"
CLIP_SECS = 10
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]


def run(cmd):
    """Wall seconds, CPU seconds (user + sys, with threads and children) and the process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed: {p.stderr.decode()[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), p


def frames_in(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def row(label, wall, cpu, frames, ref=None):
    per = f"{wall / frames * 1000:7.1f} ms/frame  CPU {cpu / frames * 1000:6.1f} ms/frame"
    ratio = ""
    if ref:
        rw, rc, rf = ref
        ratio = f"   vs ffmpeg: wall {wall / frames / (rw / rf):4.2f} x, CPU {cpu / frames / (rc / rf):4.2f} x"
    print(f"  {label:<34} {frames:4d} frames  {wall:6.2f} s  CPU {cpu:6.2f} s  {per}{ratio}")


def bench(where, camera, ff_input, size):
    """One still and one clip from `camera`, and ffmpeg's same from `ff_input`."""
    w, h = size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "c.toml"
        cfg.write_text(f"[cameras.document]\nsource = \"{camera}\"\nwidth = {w}\nheight = {h}\nfps = 30\n"
                       f"[cameras.face]\nsource = \"{camera}\"\nwidth = {w}\nheight = {h}\nfps = 30\n"
                       f"[capture.video]\nwidth = {w}\nheight = {h}\nfps = 30\npreset = \"veryfast\"\n")
        print(f"== {where}: {camera}, {w}x{h} ==")
        # A still: 10 warm-up frames and 5 candidates, the sharpest judged and encoded.
        wall, cpu, p = run([BIN, "--config", cfg, "capture", "still", "--role", "face", "--out", tmp / "s.jpg", "--json"])
        still = json.loads(p.stdout)
        ff = run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *ff_input, "-frames:v", "15", "-update", "1",
                  "-q:v", "3", tmp / "f.jpg"])
        print(f"  still: mode {still['mode']}, verdict {still['verdict']}, faces {still.get('faces')}")
        row("ffmpeg: 15 frames to one JPEG", ff[0], ff[1], 15)
        row("agent: still (15 frames, metrics, faces)", wall, cpu, 15, (ff[0], ff[1], 15))
        # A clip.
        wall, cpu, p = run([BIN, "--config", cfg, "capture", "video", "--seconds", CLIP_SECS, "--out", tmp / "a.mp4", "--json"])
        clip = json.loads(p.stdout)
        fwall, fcpu, _ = run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *ff_input, "-t", CLIP_SECS, *X264,
                              tmp / "f.mp4"])
        ff_frames = frames_in(tmp / "f.mp4")
        print(f"  clip: mode {clip['mode']}, {clip['frames']} frames, {clip['dropped']} dropped, short {clip['short']}")
        row(f"ffmpeg: {CLIP_SECS} s clip, libx264 veryfast", fwall, fcpu, ff_frames)
        row(f"agent: {CLIP_SECS} s clip, libx264 veryfast", wall, cpu, clip["frames"], (fwall, fcpu, ff_frames))


def main():
    if not BIN.exists():
        sys.exit("build first: cargo build --release (bench/run does)")
    here = "--here" in sys.argv
    if Path("/dev/video0").exists() and here:
        bench("vivid in the VM", "v4l2:/dev/video0?format=YUYV",
              ["-f", "v4l2", "-input_format", "yuyv422", "-video_size", "640x360", "-framerate", "30", "-i", "/dev/video0"],
              (640, 360))
        return
    bench("host", "synthetic:1280x720@30", ["-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"], (1280, 720))
    if here:
        return
    print()
    if os.geteuid() != 0:
        print("== vivid in the VM: skipped (the VM needs root) ==")
        return
    subprocess.run([str(ROOT / "scripts" / "vivid"), "--exec", "python3", "-B", str(Path(__file__).resolve()), "--here"],
                   check=True)


if __name__ == "__main__":
    main()
