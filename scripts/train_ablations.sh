#!/bin/sh
# Train the five ablation models of issue 6 (configs/ablations/*.toml), one after the other, each in
# runs/ablations/NAME; a run already there is resumed (or skipped when finished), so the script can be
# stopped and started again at any time. Extra flags for `burstkpn train` go in $TRAIN_FLAGS
# (e.g. TRAIN_FLAGS="--threads 1"); $VARIANTS picks a subset.
#   sh scripts/train_ablations.sh ../shared/data/train/sun_hays80 ../shared/data/train/urban100 ../shared/data/train/wallpapers24
set -e
[ $# -ge 1 ] || { echo "usage: sh scripts/train_ablations.sh IMAGE_FOLDER..." >&2; exit 2; }
for name in ${VARIANTS:-kpn-ablation kpn-blind dpn kpn-noanneal kpn-single}; do
    out="runs/ablations/$name"
    if [ -f "$out/checkpoint.pt" ]; then
        burstkpn train --images "$@" --out "$out" --resume $TRAIN_FLAGS
    else
        burstkpn train --images "$@" --out "$out" --config "configs/ablations/$name.toml" $TRAIN_FLAGS
    fi
done
