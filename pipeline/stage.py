"""Plumbing shared by the stage scripts: params, metrics files, and clean exits on bad input."""
from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from pipeline.config import Config, ConfigError, load
from pipeline.data.common import DataError
from pipeline.gpu_claims import claim_visible_gpus


def write_metrics(path: Path, metrics: dict) -> Path:
    """A metrics JSON file, keys sorted, for `dvc metrics show/diff`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


WALL_CLOCK = ("train/seconds", "train/samples_per_s")  # logged to MLflow, kept out of the metrics files
MODEL_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version", "epoch", "global_step")


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    """Write the Lightning `checkpoint` reduced to what loading the model needs (`MODEL_KEYS`) to `out`. Optimizer,
    loop and callback states are left out: the last holds wall-clock times, which would give two trainings with
    identical weights files of different hashes, and DVC would re-run every later stage."""
    out.parent.mkdir(parents=True, exist_ok=True)
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)
    torch.save({key: full[key] for key in MODEL_KEYS if key in full}, out)
    return out


def publish(run, module, metrics: dict, data: Path, workdir: Path, out: Path, metrics_path: Path) -> None:
    """Export the best checkpoint of `workdir` to `out`; write the metrics file without the wall-clock timings
    (both files have the same bytes whenever the results are the same, so DVC re-runs nothing after a retrain to
    the same weights); log all metrics, both files, the data set trained on and `module` (the trained
    LightningModule) as the run's model."""
    export_checkpoint(workdir / "best.ckpt", out)
    run.log_metrics(metrics, step=metrics.get("train/epochs"))
    run.log_artifact(out)
    run.log_artifact(write_metrics(metrics_path, {k: v for k, v in metrics.items() if k not in WALL_CLOCK}))
    run.log_dataset(data)
    run.log_model(module.model)


def paths(names: tuple[str, ...], argv: list[str] | None = None) -> dict[str, Path]:
    """The stage's input and output paths, given on its command line (dvc.yaml's `cmd` is the one place that
    names them): `--<name> PATH` for each name, dashes for underscores."""
    parser = argparse.ArgumentParser()
    for name in names:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True)
    return vars(parser.parse_args(argv))


def run(stage: Callable[..., None], *names: str, params: str | Path = "params.yaml") -> None:
    """Read the paths `names` from the command line, load and validate the params, run `stage(config, **paths)`;
    bad input ends with its message and exit code 2, a diverged training (non-finite loss) with its message and
    exit code 1."""
    given = paths(names)
    try:
        config = load(params)
        set_up_process(config)
        stage(config, **given)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    exit_without_teardown()


def set_up_process(config: Config) -> None:
    """The process-wide settings a stage takes from its params: its GPUs (`pin_gpus`) and the precision of float32
    matrix products (`train.matmul_precision`)."""
    pin_gpus(config)
    torch.set_float32_matmul_precision(config.train.matmul_precision)


def pin_gpus(config: Config) -> None:
    """On a machine with several GPUs, give this stage the `train.devices` GPUs that the fewest other running
    stages hold (`gpu_claims`), so that experiments run side by side (`dvc queue start -j <GPUs>`) spread over them.
    torch counts GPUs through NVML here, without starting CUDA."""
    if config.train.accelerator == "cpu":
        return
    available = torch.cuda.device_count()
    gpus = claim_visible_gpus(config.train.devices, available)
    if gpus is not None:
        print(f"on GPU {', '.join(map(str, gpus))} of {available} (CUDA_VISIBLE_DEVICES)", flush=True)


def exit_without_teardown() -> None:
    """End a finished stage's process after its exit handlers (logging, MLflow, …) and without the interpreter's
    teardown of every module and object, which for a process that imported torch, Lightning and MLflow takes about
    1.5 s on 2 cores, between every two stages of a run. The stage's files are closed by then."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
