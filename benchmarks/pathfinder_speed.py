"""Pathfinder generator throughput on one CPU core, per difficulty:

    python benchmarks/pathfinder_speed.py --count 20000

Prints images/s for (segments, distractors) in LRA's baseline (9) and hard (14) lengths.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy loads

from pipeline.data.pathfinder import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    print("| segments | distractors | images/s | ink fraction |\n| ---: | ---: | ---: | ---: |")
    for segments, distractors in ((9, 1), (9, 2), (14, 1), (14, 2)):
        start = time.perf_counter()
        images, _, _ = generate(args.count, segments, distractors, seed=0)
        rate = args.count / (time.perf_counter() - start)
        print(f"| {segments} | {distractors} | {rate:,.0f} | {images.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
