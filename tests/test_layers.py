"""Imports run one way: mechanisms below training, training below the workflows, stages on top; no circles."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, direct_imports

# Lower layers first; a module may import its own layer and the layers below it.
LAYERS = {
    "mechanisms": ("pipeline/__init__.py", "pipeline/section.py", "pipeline/config.py", "pipeline/progress.py",
                   "pipeline/cuda_graphs.py", "pipeline/plots.py", "pipeline/report.py", "pipeline/scoring.py",
                   "pipeline/data/", "pipeline/model/", "pipeline/quant/", "pipeline/prune/", "pipeline/analog/",
                   "pipeline/cost/"),
    "training": ("pipeline/training/",),
    "workflows": ("pipeline/steps/", "pipeline/tracking.py", "pipeline/stage_logger.py", "pipeline/stage.py",
                  "pipeline/gpu_claims.py", "pipeline/runs.py",
                  "pipeline/presets.py", "pipeline/exact.py", "pipeline/gate.py"),
}
ORDER = list(LAYERS)
MODULES = sorted((ROOT / "pipeline").rglob("*.py"))


def layer(path: Path) -> str:
    name = path.relative_to(ROOT).as_posix()
    return next(layer for layer, prefixes in LAYERS.items() if any(name.startswith(p) for p in prefixes))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer(path)  # StopIteration names a module missing from LAYERS


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_go_down_or_sideways(path):
    upward = [p.relative_to(ROOT).as_posix() for p in direct_imports(path)
              if ORDER.index(layer(p)) > ORDER.index(layer(path))]
    assert not upward, f"{layer(path)} module imports {upward}"


def test_no_import_circle():
    # a module inside a package runs after that package's __init__ has started: no edge back to it
    graph = {path: {t for t in direct_imports(path) if not (t.name == "__init__.py" and t.parent in path.parents)}
             for path in MODULES}
    state: dict[Path, str] = {}

    def visit(path: Path, trail: list[Path]) -> None:
        state[path] = "open"
        for target in graph[path]:
            if state.get(target) == "open":
                circle = trail[trail.index(target):] + [target] if target in trail else [path, target]
                pytest.fail("import circle: " + " → ".join(p.relative_to(ROOT).as_posix() for p in circle))
            if target not in state:
                visit(target, trail + [target])
        state[path] = "done"

    for path in MODULES:
        if path not in state:
            visit(path, [path])


def test_importing_the_library_changes_no_environment_and_no_warning_filter():
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in MODULES]
    script = (
        "import os, warnings, importlib\n"
        "import torch, lightning, lightning.pytorch.loggers, torchmetrics, datasets, numpy, yaml, pydantic, triton\n"
        "import matplotlib, sklearn.datasets, scipy.stats, mnist1d.data  # what the modules import at their top\n"
        "env, filters = dict(os.environ), list(warnings.filters)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert list(warnings.filters) == filters, [f for f in warnings.filters if f not in filters]\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MLFLOW_DISABLE_TELEMETRY")}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("stage", ["check_params", "prepare"])
def test_stages_that_train_nothing_start_without_the_training_stack(stage):
    # Lightning, torch._dynamo and Triton take seconds to import: a CPU-only process of a stage that trains nothing
    # does not load them (nor datasets, for the check that reads no data)
    heavy = ["lightning", "torch._dynamo", "triton"] + (["datasets"] if stage == "check_params" else [])
    script = f"import sys, stages.{stage}\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
