"""The default chain's gated metrics over seeds: the spread the statistical regression gate is built from.

    python benchmarks/chain_seeds.py --seeds 0-7 --jobs 8 --out chain_seeds.json
    python benchmarks/chain_seeds.py --seeds 0-4 --set prune.criterion=accuracy --out before.json

Runs the stages of dvc.yaml up to `evaluate` (the gated ones), each command as dvc.yaml writes it, in a scratch
folder per seed with params.yaml's values, `seed` and the `--set` overrides; tracking off, one thread per chain.
Needs neither DVC nor MLflow. Writes every run's gated metrics (regression/tolerances.yaml) and their mean, sample
standard deviation and n, ready for `python -m pipeline.gate --band FILE`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline.gate import TOLERANCES, current, read_gates  # noqa: E402

GATED_STAGES = ("prepare", "pretrain", "qat", "prune", "finetune", "evaluate")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def chain(seed: int, overrides: list[str], scratch: Path) -> dict[str, float]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seed"], params["tracking"] = seed, {"enabled": False}
    for override in overrides:
        key, _, value = override.partition("=")
        *path, leaf = key.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    folder = scratch / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "stages").symlink_to(ROOT / "stages")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CI": "1"}
    commands = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in GATED_STAGES:
        done = subprocess.run(commands[stage]["cmd"], shell=True, cwd=folder, env=env, capture_output=True, text=True)
        (folder / f"{stage}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"seed {seed}: stage {stage} failed:\n{done.stderr[-2000:]}")
    return current(read_gates(ROOT / TOLERANCES)[0], folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seeds, default=seeds("0-4"), help="first-last (inclusive)")
    parser.add_argument("--set", action="append", default=[], help="key.path=value (YAML), any number")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start, runs = time.time(), {}
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.jobs) as pool:
        jobs = {pool.submit(chain, seed, args.set, Path(scratch)): seed for seed in args.seeds}
        for job in as_completed(jobs):  # the file is rewritten as runs finish: a cut-off call keeps what ended
            runs[jobs[job]] = job.result()
            band = {name: {"mean": statistics.fmean(r[name] for r in runs.values()),
                           "std": statistics.stdev(r[name] for r in runs.values()) if len(runs) > 1 else 0.0,
                           "n": len(runs)} for name in runs[jobs[job]]}
            result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                      "torch": torch.__version__, "overrides": args.set, "seconds": time.time() - start,
                      "runs": {str(s): r for s, r in sorted(runs.items())}, "band": band}
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, b in band.items():
        print(f"{name}: mean {b['mean']:.6g} std {b['std']:.3g} n {b['n']}")


if __name__ == "__main__":
    main()
