"""Burst alignment, one home: global shifts by phase correlation (`shifts`) and HDR+ tile alignment with
its snap to the global shift (`tiles`). Shift convention: frame i at pixel p shows the reference scene
at ``p + shift_i``; aligning resamples frame i at ``p - shift_i``.
"""

from burstkpn.align.shifts import (
    align_global,
    estimate_global_shifts,
    select_frames,
    tukey_window,
    warp_frames,
)
from burstkpn.align.tiles import (
    TILE_SNAP_MARGIN,
    TileAlignParams,
    align_tiles,
    aligned_stack,
    snap_to_prior,
    tile_align,
    tile_displacements,
)

__all__ = [
    "TILE_SNAP_MARGIN", "TileAlignParams", "align_global", "align_tiles", "aligned_stack", "estimate_global_shifts",
    "select_frames", "snap_to_prior", "tile_align", "tile_displacements", "tukey_window", "warp_frames",
]
