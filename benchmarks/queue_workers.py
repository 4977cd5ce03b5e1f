"""Experiments through DVC's queue with 1, 2, … workers: wall time, throughput and the GPU each stage ran on.

    python benchmarks/queue_workers.py --preset presets/smnist.yaml --source .device/mnist --experiments 4 \\
        --workers 1,2 --epochs 1 --out queue.json

A fresh git + DVC project in a temporary folder gets this repository's `pipeline/`, `stages/`, `dvc.yaml` and the
preset's params (tracking off, `pretrain.epochs` set, the data source given); its data is prepared once and
committed. Then, for each worker count W, `--experiments` experiments (`-S seed=<s>`, seeds not used before in
the project, stage `pretrain`) are queued and run with `dvc exp run --run-all -j W`. Per W: the wall time of the
whole queue, the training samples per second of all experiments together (Σ samples trained / wall time), each
experiment's last-epoch rate and the GPUs its stage claimed (`pipeline/gpu_claims.py`, from the stage's `on GPU`
line; none on a one-GPU or CPU machine).
Needs `dvc` and `git` on the PATH, not MLflow.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from bench_config import Report

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"train/samples_per_s=([0-9.]+)")
GPU = re.compile(r"on GPU ([0-9, ]+) of ([0-9]+)")


def run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def make_project(folder: Path, preset: Path, source: str | None, epochs: int) -> None:
    """A committed git + DVC project in `folder` with the code, the preset's params and its prepared data."""
    for name in ("pipeline", "stages", "dvc.yaml", ".dvcignore"):
        source_path = ROOT / name
        if source_path.is_dir():
            shutil.copytree(source_path, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source_path, folder / name)
    params = yaml.safe_load(preset.read_text())
    params["tracking"] = {"enabled": False}
    params["pretrain"]["epochs"] = epochs
    if source:
        params["data"]["source"] = str(Path(source).resolve())
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / ".gitignore").write_text("/data/\n/models/\n/runs/\n__pycache__/\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                    ["dvc", "repro", "prepare"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "prepared"]):
        run(command, folder)


def one_queue(folder: Path, workers: int, experiments: int, samples_per_epoch: int, epochs: int) -> dict:
    """Queue `experiments` trainings and run them `workers` at a time. Seeds differ between calls: DVC's run cache
    would restore a training of the same params instead of running it."""
    seeds = range(1000 * workers, 1000 * workers + experiments)
    names = [f"w{workers}-seed{seed}" for seed in seeds]
    for seed, name in zip(seeds, names):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"seed={seed}", "pretrain"], folder)
    start = time.perf_counter()
    run(["dvc", "exp", "run", "--run-all", "-j", str(workers)], folder)
    wall = time.perf_counter() - start
    per_experiment = {}
    for name in names:
        log = run(["dvc", "queue", "logs", name], folder)
        rates = RATE.findall(log)
        gpus = GPU.search(log)
        per_experiment[name] = {"last_epoch_samples_per_s": float(rates[-1]) if rates else None,
                                "gpus": gpus.group(1) if gpus else None}
    return {"wall_s": wall, "samples_per_s_all": experiments * epochs * samples_per_epoch / wall,
            "experiments": per_experiment}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, default=ROOT / "presets/smnist.yaml")
    parser.add_argument("--source", help="the data source, e.g. .device/mnist (default: the preset's)")
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("queue_workers.json"))
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    report = Report(args.out, preset=str(args.preset), experiments=args.experiments, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        make_project(folder, args.preset, args.source, args.epochs)
        samples = json.loads((folder / "metrics" / "prepare.json").read_text())["data/train_size"]
        for workers in counts:
            report(f"workers {workers}", one_queue(folder, workers, args.experiments, samples, args.epochs))


if __name__ == "__main__":
    main()
