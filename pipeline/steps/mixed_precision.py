"""Greedy per-component bit descent (mixed-precision search, as in QS4D; a heterogeneous per-component precision
is also what Zhao et al., arXiv 2506.12480, found to cut an S4D model's memory 6× on sMNIST).

Start with every searched component at `start_bits` (a short QAT from the float model). Each round, lower each
component that is above `min_bits` by one bit and fine-tune that candidate with a short QAT from the current
model; keep the cheapest candidate (by `cost`) whose validation accuracy stays at or above the cutoff (the
start's validation accuracy − `tolerance`, or `cutoff`). Stop when no candidate does. Components not searched
keep their `qat.bits` width.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config, QatConfig, resolve_bits
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_bit_descent
from pipeline.scoring import accuracy
from pipeline.steps.evaluate import model_energy, range_batches
from pipeline.steps.qat import costs, train
from pipeline.training import ClassifierModule, for_short_runs

WORKDIR = Path("runs/mixed_precision")


@dataclass
class Candidate:
    bits: dict[str, int]
    val_acc: float
    cost: float
    module: ClassifierModule | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {"bits": self.bits, "val_acc": self.val_acc, "cost": self.cost}


def lowered(bits: dict[str, int], min_bits: int) -> list[dict[str, int]]:
    """Every configuration with one component (above `min_bits`) one bit lower, in component order."""
    return [{**bits, c: w - 1} for c, w in bits.items() if w > min_bits]


def cheapest_passing(candidates: list[Candidate], cutoff: float) -> Candidate | None:
    """The lowest-cost candidate with val_acc ≥ cutoff (ties: the more accurate), or None."""
    passing = [c for c in candidates if c.val_acc >= cutoff]
    return min(passing, key=lambda c: (c.cost, -c.val_acc)) if passing else None


def descend(start: Candidate, cutoff: float, min_bits: int, evaluate: Callable[[dict, Candidate], Candidate],
            on_round: Callable[[int, list[Candidate], Candidate | None], None] | None = None) -> list[Candidate]:
    """The accepted path from `start`; `evaluate(bits, current)` trains and measures one candidate."""
    path = [start]
    while True:
        candidates = [evaluate(bits, path[-1]) for bits in lowered(path[-1].bits, min_bits)]
        chosen = cheapest_passing(candidates, cutoff)
        if on_round is not None:
            on_round(len(path), candidates, chosen)
        if chosen is None:
            return path
        path.append(chosen)


def cost_function(config: Config, data_dir: str | Path) -> Callable[[ClassifierModule, dict], float]:
    """cost(module, bits) for `mixed_precision.cost`: a QS4D proxy of the dense model, or the energy per inference
    of the trained module on the first evaluation device's chip."""
    name = config.mixed_precision.cost
    if name != "energy":
        return lambda module, bits: float(costs(config, data_dir, bits)[name])
    settings = config.evaluate
    x = load_split(data_dir, "train").tensors[0]
    ranges = range_batches(x, config.train.batch_size)
    return lambda module, bits: model_energy(module, ranges, x.shape[1], settings)


def search(float_module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
           log_candidate: Callable[[dict, dict], None] | None = None) -> dict:
    """Run the descent. Returns {"cutoff", "cost", "path": [...], "rounds": [...], "final": {...}}; each
    candidate is passed to `log_candidate(bits, metrics)` (e.g. an MLflow child run)."""
    settings = config.mixed_precision
    workdir = Path(workdir)
    cost = cost_function(config, data_dir)
    fixed = {c: w for c, w in resolve_bits(config.qat.bits).items() if c not in settings.components}

    def evaluate(bits: dict, current: Candidate | None) -> Candidate:
        """A short QAT at `bits` (the rest as in qat.bits) from the current model (at the start, the float one)."""
        qat = QatConfig(**{**config.qat.model_dump(), "bits": {**fixed, **bits}, "epochs": settings.epochs})
        run_dir = workdir / "-".join(f"{c}{w}" for c, w in bits.items())
        module, metrics = train(float_module if current is None else current.module, for_short_runs(config), data_dir,
                                run_dir, qat)
        shutil.rmtree(run_dir, ignore_errors=True)
        candidate = Candidate(bits, metrics["val/acc"], cost(module, {**fixed, **bits}), module)
        print(f"  {bits}: val/acc {candidate.val_acc:.4f}, {settings.cost} {candidate.cost:.4g}", flush=True)
        if log_candidate is not None:
            log_candidate(bits, {"val/acc": candidate.val_acc, f"cost/{settings.cost}": candidate.cost})
        return candidate

    rounds = []

    def on_round(number: int, candidates: list[Candidate], chosen: Candidate | None) -> None:
        rounds.append({"round": number, "candidates": [c.summary() for c in candidates],
                       "chosen": None if chosen is None else chosen.summary()})
        print(f"round {number}: " + (f"keep {chosen.bits}" if chosen else "no candidate passes; stop"), flush=True)

    start = evaluate(dict.fromkeys(settings.components, settings.start_bits), None)
    cutoff = settings.cutoff if settings.cutoff is not None else start.val_acc - settings.tolerance
    print(f"start: val/acc {start.val_acc:.4f}; cutoff {cutoff:.4f}", flush=True)
    path = descend(start, cutoff, settings.min_bits, evaluate, on_round)
    final = path[-1]
    x, y = load_split(data_dir, "test").tensors
    test_acc = accuracy(final.module.model, x, y, final.module.eval_mode)
    return {"cost": settings.cost, "cutoff": cutoff, "fixed": fixed, "path": [c.summary() for c in path],
            "rounds": rounds,
            "final": {**final.summary(), "test_acc": test_acc, "start_cost": start.cost,
                      "cost_reduction": start.cost / final.cost}}


def run(config: Config, data: Path, float_model: Path, metrics: Path, plot: Path) -> None:
    """The `mixed_precision` stage: greedy per-component bit descent from the float model → a metrics file (the
    accepted path, every round's candidates, the final bits) and a plot."""
    with tracking.stage_run(config, "mixed_precision") as tracked:
        def log_candidate(bits: dict, values: dict) -> None:
            name, params = "-".join(f"{c}{w}" for c, w in bits.items()), {f"bits.{c}": w for c, w in bits.items()}
            with tracked.child(name, params) as candidate:
                candidate.log_metrics(values)

        float_module = ClassifierModule.load(float_model)
        result = search(float_module, config, data, WORKDIR, log_candidate)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        final = result["final"]
        tracked.log_metrics({"final/val_acc": final["val_acc"], "final/test_acc": final["test_acc"],
                         f"final/cost/{result['cost']}": final["cost"], "final/cost_reduction": final["cost_reduction"],
                         "rounds": len(result["rounds"])})
        tracked.log_artifact(stage.write_metrics(metrics, result))
        tracked.log_artifact(plot_bit_descent(result, plot))
    print(f"mixed precision: {json.dumps(final['bits'])}; val/acc {final['val_acc']:.4f}, test/acc "
          f"{final['test_acc']:.4f}; {result['cost']} ÷{final['cost_reduction']:.2f} from the start "
          f"(use it: dvc exp run -S 'qat.bits={json.dumps({**result['fixed'], **final['bits']})}')")
