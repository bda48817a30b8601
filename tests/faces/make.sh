#!/usr/bin/env bash
# Makes the face test images from one public-domain photograph: NASA's portrait of astronaut
# Eileen Collins ("No known copyright restrictions, released into the public domain"; NASA
# Great Images, https://flic.kr/p/r9qvLn), as scikit-image ships it (skimage/data/astronaut.png,
# 512x512). Run with that file as the argument; the outputs are committed.
#
#   one.jpg    one face, about 300 px wide, on a plain 1280x720 background (a good selfie)
#   two.jpg    two faces side by side (someone behind the customer)
#   small.jpg  one face about 90 px wide (too far from the camera)
#   none.jpg   the same background with no face
#   document.jpg  a 1920x1080 "ID card" with the portrait off-centre (the document photo crop)
#   ../../capture/src/synthetic_face.jpg  the 256x256 head the synthetic camera draws
set -euo pipefail
cd "$(dirname "$0")"
src=${1:?usage: make.sh path/to/astronaut.png}
head="crop=256:256:130:10"
ff() { ffmpeg -loglevel error -y "$@"; }
ff -i "$src" -vf "$head" -q:v 3 ../../capture/src/synthetic_face.jpg
bg="color=c=0x707070:s=1280x720:d=1"
ff -f lavfi -i "$bg" -i "$src" -filter_complex "[1]$head,scale=600:600[f];[0][f]overlay=340:60" -frames:v 1 -q:v 3 one.jpg
ff -f lavfi -i "$bg" -i "$src" -filter_complex "[1]$head,scale=560:560,split[a][b];[0][a]overlay=40:80[x];[x][b]overlay=680:80" -frames:v 1 -q:v 3 two.jpg
ff -f lavfi -i "$bg" -i "$src" -filter_complex "[1]$head,scale=180:180[f];[0][f]overlay=550:270" -frames:v 1 -q:v 3 small.jpg
ff -f lavfi -i "$bg" -frames:v 1 -q:v 3 none.jpg
ff -f lavfi -i "color=c=0xd8d0c0:s=1920x1080:d=1" -i "$src" -filter_complex "[1]$head,scale=520:520[f];[0][f]overlay=180:300" -frames:v 1 -q:v 3 document.jpg
