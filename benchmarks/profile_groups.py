"""A training step's GPU time by kind of work, from the kernel table `step_profile.py` prints (its profiled steps):
a kernel named in NAMED goes to its group, any other to the first group whose name fragment its (possibly
truncated) name contains.

    python benchmarks/profile_groups.py benchmarks/results/step_profile_smnist_float_h100.txt [--steps 5]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

GROUPS = (  # (group, fragments of kernel names), first match wins
    ("Toeplitz products and tap tiles", ("_toeplitz", "_tap_tiles")),
    ("lag sums", ("_lag_sums",)),
    ("torch copies", ("elementwise_kernel<128, 2",)),
    ("GEMMs", ("gemm", "gemv", "reduce_wgrad")),
    ("mixing bias and its gradient", ("fused_convolution",)),
    ("GLU", ("glu",)),
    ("dropout", ("dropout",)),
    ("batch norm", ("batch_norm",)),
    ("kernel generation", ("cos", "exp")),
    ("AdamW", ("multi_tensor",)),
)
NAMED = {"_forward": "kernel generation", "_backward": "kernel generation"}  # vandermonde.py's one-pass kernels
TIME = re.compile(r"^([\d.]+)(ms|us)$")


def kernel_times(table: str) -> list[tuple[str, float]]:
    """(name, total µs) of each row of a torch profiler table with a `Self CUDA` column."""
    lines = table.splitlines()
    header = next((line for line in lines if "Self CUDA" in line), None)
    if header is None:
        raise ValueError("no profiler table with a 'Self CUDA' column")
    columns = re.split(r"\s{2,}", header.strip())
    column = columns.index("Self CUDA")
    rows = []
    for line in lines:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(columns) and cells[-1].isdigit():
            value, unit = TIME.match(cells[column]).groups()
            rows.append((cells[0], float(value) * (1000 if unit == "ms" else 1)))
    return rows


def grouped(rows: list[tuple[str, float]]) -> dict[str, float]:
    """Total µs per group, 'the rest' for names no group claims."""
    totals: dict[str, float] = {}
    for name, microseconds in rows:
        group = NAMED.get(name) or next((g for g, fragments in GROUPS if any(f in name for f in fragments)), "the rest")
        totals[group] = totals.get(group, 0.0) + microseconds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", type=Path)
    parser.add_argument("--steps", type=int, default=5, help="steps the profile covers (step_profile.py: 5)")
    args = parser.parse_args()
    totals = grouped(kernel_times(args.table.read_text()))
    whole = sum(totals.values())
    print(f"{whole / args.steps:.0f} µs per step in the table's kernels")
    for group, microseconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {group} | {microseconds / args.steps:.0f} | {microseconds / whole:.0%} |")


if __name__ == "__main__":
    main()
