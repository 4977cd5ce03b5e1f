"""Exact tier of the regression gate: every step of the chain that needs no training, on committed inputs.

    python -m pipeline.exact             # compare with regression/exact/expected.json; exit 1 on any difference
    python -m pipeline.exact --update    # take the current outputs as expected (then commit them)
    python -m pipeline.exact --fixtures models/pretrain.ckpt models/qat.ckpt data/prepared   # new inputs

Inputs (regression/exact/): `float.ckpt` and `qat.ckpt`, weights-only checkpoints of a default run's float and 4-bit
QAT models, and `data.pt`, a fixed slice of its data (calibration, validation and test samples). From them: PTQ of
the float model; the pruning search on the QAT model (both criteria, on the first 200 validation samples); cost
proxies and the robustness curve of the pruned model; its crossbar mapping, program export and simulation on the
ideal and the RRAM preset (fixed seeds, two chips, two times); its energy per inference. A value passes when it
is within `RELATIVE` of the expected one: far above float rounding, far below any change of behaviour (one flipped
sample is ≥ 0.5%).
The chips' accuracies (`crossbar/…`) pass within one test sample of one chip: B̄'s complex arithmetic and the
range calibration's sums round differently on another CPU code path (an ulp), which can move one converter code
and, once in a few hundred sequences, the class of one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from pipeline.analog.export import load as load_programs
from pipeline.analog.export import save as save_programs
from pipeline.config import EvaluateConfig
from pipeline.cost import model_proxies, proxies
from pipeline.data.datamodule import load_split
from pipeline.prune.masks import fractions
from pipeline.prune.search import prune
from pipeline.quant import calibrate
from pipeline.scoring import scores
from pipeline.steps.evaluate import crossbar_accuracy, energy_metrics, layout_metrics
from pipeline.steps.finetune import robustness
from pipeline.steps.prune import live_counts, pruned_copy
from pipeline.training import CALIBRATION_BATCHES, ClassifierModule

FOLDER = Path("regression/exact")
EXPECTED = FOLDER / "expected.json"
RELATIVE = 1e-5
SLICE = {"train": CALIBRATION_BATCHES * 64, "validation": 400, "test": 300}  # samples kept of each split
SEARCH_SAMPLES = 200  # the pruning searches' held-out samples: the first of the kept validation slice
EVALUATE = EvaluateConfig(devices=["ideal", "rram"], chips=2, times=[1.0, 86400.0], batch_size=64)
SIGMAS, DRAWS = [0.0, 0.02, 0.05], 2
CHUNKS = 64  # the pruning searches' smallest chunk: 1/64 of the candidates, as the default run's `prune.chunks`


def make_fixtures(float_ckpt: Path, qat_ckpt: Path, data_dir: Path, folder: Path = FOLDER) -> None:
    """Weights-only copies of two checkpoints and a slice of the prepared data, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((float_ckpt, "float.ckpt"), (qat_ckpt, "qat.ckpt")):
        full = torch.load(source, map_location="cpu", weights_only=False)
        torch.save({k: full[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version")},
                   folder / name)
    data = {}
    for split, n in SLICE.items():
        x, y = load_split(data_dir, split).tensors
        data[split] = (x[:n].clone(), y[:n].clone())
    torch.save(data, folder / "data.pt")


def _prefixed(prefix: str, values: dict) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


def _digest(tensor: torch.Tensor) -> float:
    """A scalar fingerprint of a tensor: Σ x·(1 + i/n) over its flattened entries (order-sensitive)."""
    flat = tensor.detach().double().flatten()
    return float((flat * (1 + torch.arange(len(flat), dtype=torch.float64) / max(1, len(flat)))).sum())


@torch.no_grad()
def outputs(folder: Path = FOLDER) -> dict[str, float]:
    """Every exact-tier value, by name."""
    torch.manual_seed(0)
    data = torch.load(folder / "data.pt")
    (x_cal, _), (x_val, y_val), (x_test, y_test) = data["train"], data["validation"], data["test"]
    x_val, y_val = x_val[:SEARCH_SAMPLES], y_val[:SEARCH_SAMPLES]
    calibration = list(x_cal.split(64))
    float_module = ClassifierModule.load(folder / "float.ckpt")
    qat_module = ClassifierModule.load(folder / "qat.ckpt")
    h = qat_module.hparams
    out = _prefixed("float", scores(float_module.model, x_test, y_test, "conv"))
    ptq = float_module.rebuilt(quant=qat_module.quantization)
    calibrate(ptq.model, calibration, ptq.eval_mode)
    out |= _prefixed("ptq", scores(ptq.model, x_test, y_test, ptq.eval_mode))
    out["ptq/logits"] = _digest(ptq.model.eval()(x_test[:32], ptq.eval_mode))
    out |= _prefixed("qat", scores(qat_module.model, x_test, y_test, qat_module.eval_mode))
    bits = qat_module.bits
    meta = (h.d_in, h.n_classes)
    shape = (h.model["n_layers"], h.model["d_model"], h.model["d_state"], *meta)
    out |= _prefixed("cost/float", model_proxies(*shape, {}))
    out |= _prefixed("cost/qat", model_proxies(*shape, bits))

    accuracy_pruned = pruned_copy(qat_module)
    search = prune(accuracy_pruned.model, x_val, y_val, qat_module.eval_mode, 0.01, criterion="accuracy",
                   chunks=CHUNKS)
    out |= _prefixed("prune_accuracy", {**search["removed"], "val_acc": search["val_acc"]})
    pruned = pruned_copy(qat_module)
    search = prune(pruned.model, x_val, y_val, qat_module.eval_mode, 0.05, criterion="loss", chunks=CHUNKS)
    out |= _prefixed("prune_loss", {**search["removed"], "val_acc": search["val_acc"], "val_loss": search["val_loss"]})
    layers = search["layers"]
    out |= _prefixed("pruned", {k.removeprefix("pruned/"): v for k, v in fractions(layers).items()})
    out |= _prefixed("pruned/test", scores(pruned.model, x_test, y_test, pruned.eval_mode))
    out |= _prefixed("cost/pruned", proxies(live_counts(pruned, layers), *meta, bits))

    curve = robustness(pruned, x_test, y_test, SIGMAS, DRAWS, seed=0)
    out |= {f"noise/{s}/{k}": v for s, point in curve.items() for k, v in point.items()}

    curves, programs = crossbar_accuracy(pruned, x_test, y_test, calibration, EVALUATE, seed=0)
    out |= {f"crossbar/{d}/{t}/{k}": v for d, c in curves.items() for t, point in c.items() for k, v in point.items()}
    for device, device_programs in programs.items():
        out |= _prefixed(f"layout/{device}", layout_metrics(device_programs))
        with tempfile.TemporaryDirectory() as scratch:
            save_programs(device_programs, scratch, device)
            for i, program in enumerate(load_programs(scratch)):
                for name, tensor in program.tensors().items():
                    out[f"program/{device}/layer{i}/{name}"] = _digest(tensor)
    energy, _ = energy_metrics(pruned, programs["rram"], x_test.shape[1], EVALUATE)
    out |= {k: float(v) for k, v in energy.items()}
    return out


def tolerance(key: str) -> float:
    """The absolute difference a value may show besides `RELATIVE` (module docstring): one sample of one chip for
    the chips' accuracies."""
    return 1.001 / SLICE["test"] if key.startswith("crossbar/") else 1e-12


def compare(expected: dict[str, float], now: dict[str, float], relative: float = RELATIVE) -> list[str]:
    """One line per value that differs beyond `relative` and `tolerance` (or is missing or new)."""
    problems = [f"{k}: missing (expected {expected[k]!r})" for k in sorted(set(expected) - set(now))]
    problems += [f"{k}: new value {now[k]!r} (not in the expected file)" for k in sorted(set(now) - set(expected))]
    for key in sorted(set(expected) & set(now)):
        want, got = expected[key], now[key]
        if not math.isclose(got, want, rel_tol=relative, abs_tol=tolerance(key)):
            problems.append(f"{key}: expected {want!r}, now {got!r}")
    return problems


def fingerprint(folder: Path = FOLDER) -> str:
    """sha256 of the committed inputs: expected values hold only for these."""
    digest = hashlib.sha256()
    for name in ("float.ckpt", "qat.ckpt", "data.pt"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None, folder: Path = FOLDER) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="write the current outputs as the expected ones")
    parser.add_argument("--fixtures", nargs=3, type=Path, metavar=("FLOAT_CKPT", "QAT_CKPT", "DATA_DIR"),
                        help="make new inputs from a run's checkpoints and prepared data (then --update)")
    args = parser.parse_args(argv)
    if args.fixtures:
        make_fixtures(*args.fixtures, folder)
        print(f"inputs written to {folder}; now run: python -m pipeline.exact --update")
        return 0
    now = outputs(folder)
    expected_file = folder / EXPECTED.name
    if args.update:
        expected_file.write_text(json.dumps({"inputs_sha256": fingerprint(folder), "values": now}, indent=1,
                                            sort_keys=True) + "\n")
        print(f"{expected_file}: {len(now)} values; commit it with the inputs")
        return 0
    expected = json.loads(expected_file.read_text())
    if expected["inputs_sha256"] != fingerprint(folder):
        print(f"exact tier FAILED: the inputs in {folder} are not those {expected_file} was made from",
              file=sys.stderr)
        return 1
    problems = compare(expected["values"], now)
    if problems:
        print(f"exact tier FAILED: {len(problems)} of {len(expected['values'])} values differ beyond "
              f"{RELATIVE:g} relative:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"exact tier passed: {len(now)} values within {RELATIVE:g} relative (chips' accuracies within one sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
