"""Issue 25's bar, read off a sweep table written by `scripts/sweep.py`.

    python scripts/sweep_bars.py docs/experiments/sweep-hold2-bm3d.md [MORE.md ...] [--model kpn]

Several tables of the same cells (`sweep.py` is seeded: the same photos, cells and seed give the same bursts) are
read as one, so a new model's rows can be measured alone and set beside the classical rows of an earlier run; a
row found in two tables must agree to 0.01 dB in every cell (the check that the bursts were the same).

For every learned row (all rows after the classical ones): the mean gamma PSNR over the cells, the cells where it
is not at least 0.5 dB above the aligned average / HDR+, the cells more than 0.5 dB under bm3d-merged and its mean
against it, and its worst cell against ``--model`` (the shipped default). Figures are the table's gamma PSNRs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLASSICAL = ("reference", "aligned-average", "hdrplus", "bm3d-merged", "bm4d-aligned")


def read_table(path: str | Path) -> tuple[list[str], dict[str, list[float]]]:
    """(cell labels, {row name: gamma PSNR per cell}) of the first markdown table in ``path``."""
    lines = [line for line in Path(path).read_text().splitlines() if line.startswith("| ")]
    if not lines:
        raise SystemExit(f"{path}: no table")
    cells = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    if cells and cells[-1].startswith("mean"):
        cells = cells[:-1]
    rows = {}
    for line in lines[1:]:
        parts = [c.strip() for c in line.strip("|").split("|")]
        rows[parts[0]] = [float(v.split("/")[0]) for v in parts[1:1 + len(cells)]]
    return cells, rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+")
    p.add_argument("--model", default="kpn", help="the row the others are compared with cell by cell")
    args = p.parse_args()
    cells, rows = read_table(args.tables[0])
    for path in args.tables[1:]:
        more_cells, more = read_table(path)
        if more_cells != cells:
            raise SystemExit(f"{path}: other cells than {args.tables[0]}")
        for name, values in more.items():
            if name in rows and max(abs(a - b) for a, b in zip(rows[name], values)) > 0.01:
                raise SystemExit(f"{path}: row {name!r} differs from the earlier table's: not the same bursts")
            rows.setdefault(name, values)
    mean = {name: sum(v) / len(v) for name, v in rows.items()}
    print(f"{len(cells)} cells; means: " + ", ".join(f"{n} {m:.2f}" for n, m in mean.items()))
    for name, values in rows.items():
        if name in CLASSICAL:
            continue
        line = [f"{name}: mean {mean[name]:.2f}"]
        for base in ("aligned-average", "hdrplus"):
            if base in rows:
                short = [c for c, v, b in zip(cells, values, rows[base]) if v < b + 0.5]
                line.append(f"under {base} + 0.5: {len(short)}" + (f" ({', '.join(short)})" if short else ""))
        if "bm3d-merged" in rows:
            gap = [v - b for v, b in zip(values, rows["bm3d-merged"])]
            under = [f"{c} {g:+.2f}" for c, g in zip(cells, gap) if g < -0.5]
            line.append(f"against bm3d-merged {sum(gap) / len(gap):+.2f} on average, {len(under)} cells more than 0.5 "
                        f"under" + (f" ({', '.join(under)})" if under else ""))
        if args.model in rows and name != args.model:
            diff = [v - b for v, b in zip(values, rows[args.model])]
            worst = min(range(len(cells)), key=lambda i: diff[i])
            line.append(f"against {args.model}: {sum(diff) / len(diff):+.2f} on average, worst {cells[worst]} {diff[worst]:+.2f}")
        print("; ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
