"""QS4D claim by claim: the pieces of the reproduction study for one task and seed, each written to its own JSON as
it finishes, checkpoints kept beside them, so a run cut off after `--budget-s` seconds resumes where it stopped.

    python benchmarks/reproduction.py --task smnist --seed 0 --source .device/mnist --work .device/study \\
        --tables float,sweep,cost,noise,prune --budget-s 540

Then `python benchmarks/reproduction_report.py --work .device/study` turns every task's and seed's pieces into the
tables and figures of benchmarks/REPRODUCTION.md. Tables (each builds on the float model; `cost`, `noise`,
`noise_training` and `prune` on the `sweep`'s checkpoints):

- `sweep`: each component alone, and all together, at each width of `SWEEP_BITS`: PTQ, then QAT from the float model;
- `cost`: per component the smallest width within `TOLERANCE` of float for PTQ and for QAT, that mixed setting
  evaluated (PTQ) and trained (QAT), with ACE, size and ADC;
- `search`: the greedy mixed-precision search (pipeline/steps/mixed_precision.py) from 6 bits at `TOLERANCE`;
- `size`: float and QAT at 10, 8, 7, 6 bits for each state size N and width H of the task;
- `noise`: test accuracy under weight noise of the authors' protocol and of ours, float vs QAT at 10, 8, 7, 6, 5
  bits;
- `noise_training`: float and QAT at 8, 6, 5 bits fine-tuned for an epoch under the authors' noise at each σ of
  `TRAIN_SIGMAS`, tested at that σ;
- `prune`: modes, entries and mixing weights pruned at 1 pp accuracy from the float and the 7- and 10-bit QAT
  models, selected on the validation split (ours) or on the test split (the authors'), without recovery;
- `init`: QAT from scratch (`qat.init: scratch`) at the widths of `INIT_BITS`.
Needs neither MLflow nor DVC.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from bench_config import accelerator, load_preset

from pipeline import data
from pipeline.config import COMPONENTS, Config
from pipeline.data.datamodule import load_split
from pipeline.prune.masks import fractions
from pipeline.prune.search import prune
from pipeline.steps.finetune import finetune, robustness
from pipeline.steps.mixed_precision import search
from pipeline.steps.prune import pruned_copy
from pipeline.steps.qat import compare, costs, quantized_copy, train
from pipeline.training import ClassifierModule, evaluate, fit_classifier

SWEEP_COMPONENTS = ("all", *COMPONENTS)
SWEEP_BITS = (2, 3, 4, 5, 6, 7, 8, 10)
TOLERANCE = 0.003  # "stays within 0.3 pp of float"
SIZE_BITS = (10, 8, 7, 6)
NOISE_BITS = (10, 8, 7, 6, 5)
TEST_SIGMAS = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02)
TRAIN_SIGMAS = (0.01, 0.02, 0.04)
TRAIN_NOISE_MODELS = ("float", "all8", "all6", "all5")
PRUNE_MODELS = ("float", "all7", "all10")
INIT_BITS = (8, 6, 4)
ROOT = Path(__file__).resolve().parent.parent
KEPT = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
FAST = ("train.compile=false", "train.cuda_graphs=true")  # no per-stage compile warm-up: many short runs


@dataclass(frozen=True)
class Task:
    """A task of the study: a preset at a size where the float model is not saturated, with its schedules
    (`pretrain.epochs`, `qat.epochs`) among the overrides."""

    preset: str
    overrides: tuple[str, ...]
    components: tuple[str, ...] = SWEEP_COMPONENTS
    bits: tuple[int, ...] = SWEEP_BITS
    n_classes: int = 10
    sizes: tuple[tuple[int, int], ...] = ()  # (N, H) pairs of the size table besides the task's own
    tables: tuple[str, ...] = ("float", "sweep", "cost")
    note: str = ""


SMALL = ("model.n_layers=2", "model.d_model=64", "model.d_state=32")
IMAGES = (*SMALL, "train.batch_size=256", "pretrain.epochs=6", "qat.epochs=2")
AUDIO = (*SMALL, "pretrain.epochs=30", "qat.epochs=5")
TASKS = {
    "smnist": Task("presets/smnist.yaml", IMAGES, components=("all",),
                   tables=("float", "sweep", "cost", "noise", "prune", "noise_training", "init")),
    "psmnist": Task("presets/psmnist.yaml", IMAGES, components=("all",), tables=("float", "sweep", "cost", "prune")),
    "fsdd": Task("presets/fsdd.yaml", (*AUDIO, "train.batch_size=64"),
                 sizes=tuple((n, 64) for n in (8, 16, 64, 128)) + tuple((32, h) for h in (16, 32, 128)),
                 tables=("float", "sweep", "cost", "noise", "noise_training", "init", "search", "size")),
    "fsdd2": Task("presets/fsdd.yaml", (*AUDIO, "data.digits=[0, 1]", "train.batch_size=32"), components=("all",),
                  n_classes=2),
    "pathfinder32": Task("presets/pathfinder32.yaml", (*IMAGES[:-2], "pretrain.epochs=10", "qat.epochs=2",
                                                       "pretrain.lr=0.001", "data.count=30000"),
                         components=("all",), n_classes=2),
    "scifar": Task("presets/scifar.yaml", (*IMAGES[:-2], "pretrain.epochs=20", "qat.epochs=3"),
                   tables=("float", "sweep", "cost", "noise", "prune"),
                   note="needs a copy of CIFAR-10 (data.source); not run here"),
    "mnist1d": Task("presets/mnist1d.yaml", ("train.accelerator=cpu", "pretrain.epochs=20", "qat.epochs=5"),
                    components=("all",), bits=NOISE_BITS,
                    sizes=tuple((n, 64) for n in (8, 16, 32, 128)) + tuple((64, h) for h in (16, 32, 128)),
                    tables=("float", "sweep", "cost", "noise", "prune", "noise_training", "size", "search"),
                    note="the default data on the CPU: noise and pruning claims with seeds beside sMNIST's"),
    "digits": Task("presets/digits.yaml", ("model.n_layers=1", "model.d_model=16", "model.d_state=8",
                                           "pretrain.epochs=8", "qat.epochs=2", "train.accelerator=cpu"),
                   sizes=((4, 16), (8, 8)),
                   tables=("float", "sweep", "cost", "search", "size", "noise", "noise_training", "prune", "init"),
                   note="sklearn digits on the CPU: every table in minutes, a check of the study's code"),
}


def task_config(task: Task, source: str | None = None, overrides: tuple[str, ...] = ()) -> Config:
    """The task's preset with its overrides (then `overrides`), tracking off; no data is read."""
    return load_preset(ROOT / task.preset, 1, source, [*task.overrides, *FAST, *overrides])


def mixed_bits(widths: dict[str, int | None]) -> dict[str, int | None]:
    """The QAT bits of kept widths: per component where components were swept, else the width of `all`."""
    return {c: w for c, w in widths.items() if c != "all"} or {"all": widths["all"]}


class OutOfTime(Exception):
    """The run's budget is spent: what finished is on disk, the next run resumes from it."""


@dataclass
class Study:
    """One task and seed: pieces cached as <work>/<task>/s<seed>/<piece>.json, checkpoints as <piece>.ckpt."""

    task: Task
    config: Config
    folder: Path
    prepared: Path
    deadline: float
    on: str = field(default_factory=accelerator)

    def piece(self, name: str, compute: Callable[..., dict], *args) -> dict:
        """compute(*args), unless the piece is on disk already."""
        path = self.folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        if time.monotonic() > self.deadline:
            raise OutOfTime(name)
        start = time.perf_counter()
        value = compute(*args) | {"seconds": time.perf_counter() - start}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=1, default=float))
        print(f"piece {self.folder}/{name}: {json.dumps(value, default=float)}", flush=True)
        return value

    def read(self, name: str) -> dict:
        """A finished piece (a table needs the pieces of the tables before it)."""
        return json.loads((self.folder / f"{name}.json").read_text())

    def model(self, name: str) -> ClassifierModule:
        return ClassifierModule.load(self.folder / f"{name}.ckpt")

    def keep(self, run: Path, name: str) -> None:
        """The run's best weights and hyperparameters as <name>.ckpt (no optimizer state: a tenth of the bytes to
        carry between machines)."""
        checkpoint = torch.load(run / "best.ckpt", map_location="cpu", weights_only=False)
        torch.save({k: v for k, v in checkpoint.items() if k in KEPT}, self.folder / f"{name}.ckpt")

    def run_dir(self, name: str) -> Path:
        return self.prepared.parent / "runs" / name

    def qat(self, bits: dict, **update):
        return self.config.qat.model_copy(update={"bits": bits, **update})


def float_table(s: Study) -> None:
    def compute() -> dict:
        s.folder.mkdir(parents=True, exist_ok=True)
        _, metrics = fit_classifier(s.config, s.prepared, s.run_dir("float"))
        s.keep(s.run_dir("float"), "float")
        return metrics
    s.piece("float", compute)


def sweep_table(s: Study) -> None:
    """Every (component, width); `all` keeps its checkpoints for the noise and pruning tables."""
    float_module = s.model("float")

    def compute(component: str, bits: int) -> dict:
        name = f"{component}{bits}"
        _, metrics = compare(float_module, s.config, s.prepared, s.run_dir(name), s.qat({component: bits}))
        if component == "all":
            s.keep(s.run_dir(name), name)
        return metrics
    for component in s.task.components:
        for bits in s.task.bits:
            s.piece(f"sweep/{component}{bits}", compute, component, bits)


def smallest_widths(sweep: dict[tuple[str, int], float], reference: float, tolerance: float = TOLERANCE
                    ) -> dict[str, int | None]:
    """Per component, the smallest swept width from which on every wider one keeps accuracy ≥ reference −
    tolerance (None: not even the widest does: the component stays float)."""
    widths = {}
    for component in sorted({c for c, _ in sweep}):
        held = None
        for bits in sorted((b for c, b in sweep if c == component), reverse=True):
            if sweep[component, bits] < reference - tolerance:
                break
            held = bits
        widths[component] = held
    return widths


def cost_table(s: Study) -> None:
    float_module = s.model("float")
    reference = s.read("float")["test/acc"]

    def compute(method: str, widths: dict) -> dict:
        mixed = mixed_bits(widths)
        qat = s.qat(mixed)
        if method == "ptq":
            metrics = evaluate(quantized_copy(float_module, qat), s.config, s.prepared)
        else:
            metrics = train(float_module, s.config, s.prepared, s.run_dir("mixed"), qat)[1]
        return metrics | {"widths": widths, "bits": mixed,
                          **{f"cost/{k}": v for k, v in costs(s.config, s.prepared, mixed).items()},
                          **{f"float/cost/{k}": v for k, v in costs(s.config, s.prepared, {}).items()}}
    for method, key in (("ptq", "ptq/test/acc"), ("qat", "test/acc")):
        accs = {(c, b): s.read(f"sweep/{c}{b}")[key] for b in s.task.bits for c in s.task.components}
        s.piece(f"cost/{method}_mixed", compute, method, smallest_widths(accs, reference))


def search_table(s: Study) -> None:
    """The greedy mixed-precision search from 6 bits, one QAT epoch per candidate, at the same tolerance."""
    float_module = s.model("float")

    def greedy() -> dict:
        settings = s.config.mixed_precision.model_copy(update={"start_bits": 6, "min_bits": 2, "cost": "ace",
                                                                "tolerance": TOLERANCE, "epochs": 1})
        config = s.config.model_copy(update={"mixed_precision": settings})
        result = search(float_module, config, s.prepared, s.run_dir("search"))
        bits = result["final"]["bits"]
        return {"final": result["final"], "rounds": len(result["rounds"]),
                **{f"cost/{k}": v for k, v in costs(s.config, s.prepared, bits).items()}}
    s.piece("cost/search", greedy)


def size_table(s: Study) -> None:
    def trained(sized: Study, run: str) -> dict:
        sized.folder.mkdir(parents=True, exist_ok=True)
        _, metrics = fit_classifier(sized.config, s.prepared, s.run_dir(run))
        sized.keep(s.run_dir(run), "float")
        return metrics

    def quantized(sized: Study, run: str, bits: int) -> dict:
        return train(sized.model("float"), sized.config, s.prepared, s.run_dir(f"{run}b{bits}"),
                     sized.qat({"all": bits}))[1]
    for n, h in s.task.sizes:
        config = s.config.model_copy(update={"model": s.config.model.model_copy(update={"d_state": n, "d_model": h})})
        sized = Study(s.task, config, s.folder / f"size/N{n}H{h}", s.prepared, s.deadline, s.on)
        sized.piece("float", trained, sized, f"N{n}H{h}")
        for bits in SIZE_BITS:
            sized.piece(f"all{bits}", quantized, sized, f"N{n}H{h}", bits)


def noise_table(s: Study) -> None:
    x, y = load_split(s.prepared, "test").tensors

    def tested(name: str, protocol: str) -> dict:
        return robustness(s.model(name).to(s.on), x, y, TEST_SIGMAS, 3, s.config.seed, protocol)
    for protocol in ("paper", "crossbar"):
        for name in ("float", *(f"all{b}" for b in NOISE_BITS)):
            s.piece(f"noise/test/{protocol}/{name}", tested, name, protocol)


def noise_training_table(s: Study) -> None:
    x, y = load_split(s.prepared, "test").tensors

    def trained(name: str, sigma: float) -> dict:
        settings = s.config.finetune.model_copy(update={"target": "noise", "sigma": sigma, "epochs": 1,
                                                        "noise_protocol": "paper"})
        tuned, metrics = finetune(s.model(name), s.config, s.prepared, s.run_dir(f"noisy-{name}-{sigma}"), settings)
        return metrics | {"curve": robustness(tuned.to(s.on), x, y, (sigma,), 3, s.config.seed, "paper")}
    for name in TRAIN_NOISE_MODELS:
        for sigma in TRAIN_SIGMAS:
            s.piece(f"noise/train/{name}/{sigma:g}", trained, name, sigma)


def prune_table(s: Study) -> None:
    def compute(name: str, split: str) -> dict:
        x, y = load_split(s.prepared, split).tensors
        pruned = pruned_copy(s.model(name)).to(s.on)
        result = prune(pruned.model, x, y, pruned.eval_mode, 0.01, criterion="accuracy")
        return fractions(result["layers"]) | {"select_on": split, "before": result["baseline_val_acc"],
                                              "after": result["val_acc"]}
    for name in PRUNE_MODELS:
        for protocol, split in (("ours", "validation"), ("qs4d", "test")):
            s.piece(f"prune/{protocol}/{name}", compute, name, split)


def init_table(s: Study) -> None:
    float_module = s.model("float")

    def compute(bits: int) -> dict:
        qat = s.qat({"all": bits}, init="scratch", epochs=s.config.pretrain.epochs)
        return train(float_module, s.config, s.prepared, s.run_dir(f"scratch{bits}"), qat)[1]
    for bits in INIT_BITS:
        s.piece(f"init/scratch{bits}", compute, bits)


TABLES = {"float": float_table, "sweep": sweep_table, "cost": cost_table, "search": search_table,
          "size": size_table, "noise": noise_table, "noise_training": noise_training_table,
          "prune": prune_table, "init": init_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST files)")
    parser.add_argument("--work", type=Path, default=Path("runs/study"))
    parser.add_argument("--tables", help="comma-separated, in order (default: the task's)")
    parser.add_argument("--set", action="append", default=[], help="section.key=value after the task's")
    parser.add_argument("--budget-s", type=float, default=540, help="start no piece after this many seconds")
    args = parser.parse_args()

    task = TASKS[args.task]
    tables = args.tables.split(",") if args.tables else list(task.tables)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise SystemExit(f"--tables: unknown {unknown}; allowed {sorted(TABLES)}")
    if task.note:
        print(f"{args.task}: {task.note}", flush=True)
    deadline = time.monotonic() + args.budget_s
    config = task_config(task, args.source, (f"seed={args.seed}", *args.set))
    folder = args.work / args.task / f"s{args.seed}"
    with tempfile.TemporaryDirectory(prefix="study-") as scratch:
        scratch = Path(scratch)
        data.prepare(config, scratch / "prepared")
        study = Study(task, config, folder, scratch / "prepared", deadline)
        try:
            for table in tables:
                TABLES[table](study)
        except OutOfTime as stopped:
            print(f"budget spent before {folder}/{stopped}: run again to resume", flush=True)


if __name__ == "__main__":
    main()
