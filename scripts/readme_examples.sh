#!/bin/sh
# The three real-burst examples of the README, end to end, with their before/after crops in docs/:
#   (a) a folder of 8 PNG frames, (b) 8 DNG files, (c) a 12-megapixel raw burst (peak memory measured).
# Bursts are synthesised from scikit-image's astronaut by scripts/make_burst.py (seeded), so the clean
# reference is known and PSNR is printed.   sh scripts/readme_examples.sh [WORK_DIR]
set -e
work=${1:-/tmp/burstkpn-examples}
mkdir -p "$work" docs
rm -rf "$work/pngs" "$work/dngs" "$work/raw12" "$work/out-a" "$work/out-b" "$work/out-c"

python scripts/make_burst.py --out "$work/pngs" --format png --megapixels 1 --gain 2
burstkpn denoise "$work/pngs" -o "$work/out-a/clean.png" --quiet
python scripts/compare_crops.py "$work/pngs/frame_00.png" "$work/out-a/clean.png" --clean "$work/pngs.clean.png" \
    -o docs/denoise-png.png --crop 330,300,160

python scripts/make_burst.py --out "$work/dngs" --gain 4
burstkpn denoise "$work/dngs" -o "$work/out-b/clean.dng" --quiet
python scripts/compare_crops.py "$work/dngs/frame_00.dng" "$work/out-b/clean.dng" --clean "$work/dngs.clean.npy" \
    -o docs/denoise-dng.png --crop 60,40,128

python scripts/make_burst.py --out "$work/raw12" --megapixels 12 --gain 4
/usr/bin/time -f "peak resident memory %M KB, %e s" burstkpn denoise "$work/raw12" -o "$work/out-c/clean.dng" --quiet
python scripts/compare_crops.py "$work/raw12/frame_00.dng" "$work/out-c/clean.dng" --clean "$work/raw12.clean.npy" \
    -o docs/denoise-raw12.png --crop 1100,700,200
