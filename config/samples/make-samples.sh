#!/usr/bin/env bash
# Regenerates the demo's sample evidence from FFmpeg's built-in test sources (nothing is
# downloaded). The committed files are what the demo embeds; run this only to change them.
set -euo pipefail
cd "$(dirname "$0")"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
# -map_metadata -1 and -fflags +bitexact keep encoder tags and other metadata out of the files.
ff -f lavfi -i "testsrc2=size=480x300:rate=1" -frames:v 1 -q:v 4 -map_metadata -1 -fflags +bitexact front.jpg
ff -f lavfi -i "smptebars=size=480x300:rate=1" -frames:v 1 -q:v 4 -map_metadata -1 -fflags +bitexact rear.jpg
ff -f lavfi -i "rgbtestsrc=size=120x150:rate=1" -frames:v 1 -q:v 4 -map_metadata -1 -fflags +bitexact photo.jpg
ff -f lavfi -i "mandelbrot=size=240x320:rate=1" -frames:v 1 -q:v 4 -map_metadata -1 -fflags +bitexact selfie.jpg
ff -f lavfi -i "testsrc=size=320x240:rate=15" -t 2 -c:v libx264 -preset veryslow -crf 35 -pix_fmt yuv420p \
   -movflags +faststart -map_metadata -1 -fflags +bitexact video.mp4
