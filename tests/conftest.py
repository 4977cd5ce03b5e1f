import ast
import getpass
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

for _key, _value in {"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(_key, _value)  # the tests never reach a hub or telemetry service
if "PYTEST_XDIST_WORKER" in os.environ:  # `-n 2` (pyproject.toml): the workers share the cores, so each one, and
    os.environ["OMP_NUM_THREADS"] = "1"  # the stages it starts, computes on one thread; several oversubscribe them
    torch.set_num_threads(1)
if "ATEN_CPU_CAPABILITY" in os.environ:  # inductor's cache does not key its C++ code on the ISA that this forces:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",  # code cached under another capability compiles or runs wrong
                          f"{tempfile.gettempdir()}/torchinductor_{getpass.getuser()}_{os.environ['ATEN_CPU_CAPABILITY']}")
if not torch.cuda.is_available():  # Triton kernels run under its interpreter, set before Triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pipeline import config as params  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

TINY = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"d_model": 16, "d_state": 8, "n_layers": 1},
    "train": {"batch_size": 64, "accelerator": "cpu"},
    "pretrain": {"epochs": 8, "lr": 0.01},
    "qat": {"bits": {"all": 4}, "epochs": 2},
    "prune": {"epochs": 1},
    "finetune": {"epochs": 1, "eval_sigmas": [0.0, 0.05], "draws": 2},
    "evaluate": {"chips": 2, "times": [1.0, 86400.0], "test_samples": 100,
                 # the keys the qat stage tracks for target chip (DVC needs them in params.yaml); defaults
                 "dac_bits": 8, "adc_bits": 8, "tile_rows": 64, "tile_cols": 64, "mapping": "residual",
                 "row_gains": "none", "range_margin": 1.1, "custom_devices": {}, "device_overrides": {}},
    "sweep_bits": {"components": ["all", "state"], "bits": [2], "epochs": 1},
}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖, in float64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def direct_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{s ≤ t} k[..., t − s]·u[..., s] for u (B, H, L) and k (H, L), step by step: the reference
    the convolution forms are tested against."""
    return torch.stack([(k[:, :t + 1].flip(-1) * u[..., :t + 1]).sum(-1) for t in range(u.shape[-1])], dim=-1)


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def direct_imports(path: Path) -> set[Path]:
    """The repository files that importing `path` runs directly: each `pipeline` module it names (imports inside
    functions included) and the packages on the way to it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in (n for n in names if n.split(".")[0] == "pipeline"):
            parts = name.split(".")
            found |= {f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))}
    return found - {path}


def import_closure(script: Path) -> set[str]:
    """The repository files a script runs: itself and every `pipeline` module it imports, directly or not."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += direct_imports(path)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def venv_env() -> dict:
    """Environment in which `dvc` and the stages' `python` are this interpreter's, as after activating it."""
    return {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def tiny(tmp_path):
    """A tiny digits config whose tracking store lives in tmp_path."""
    raw = {**TINY, "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"}}
    return params.parse(raw, base=tmp_path)


@pytest.fixture
def project(tmp_path):
    """A fresh git + DVC project in tmp_path with this repository's code and tiny digits params."""
    for name in ("pipeline", "stages", "dvc.yaml", ".dvcignore"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copyfile
        copy(source, tmp_path / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    (tmp_path / ".gitignore").write_text("/data/\n/models/\n/runs/\n/mlflow.db\n/mlartifacts/\n__pycache__/\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(command, cwd=tmp_path, check=True, env=venv_env())
    return tmp_path
