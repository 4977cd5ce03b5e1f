"""What the README says of the default run matches the committed metrics it describes."""
import json
import subprocess

import pytest
from conftest import ROOT


def metrics(stage: str) -> dict:
    """The committed metrics file (the workspace's may be a newer run, e.g. CI's, on another CPU)."""
    shown = subprocess.run(["git", "show", f"HEAD:metrics/{stage}.json"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip("not a git checkout with committed metrics")
    return json.loads(shown.stdout)


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def test_readme_states_the_committed_default_run():
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Measured on a 2-core machine"):text.index("For scale, the MNIST-1D authors")]
    pretrain, qat, prune, finetune, crossbar = map(metrics, ("pretrain", "qat", "prune", "finetune", "crossbar"))
    stated = [
        percent(pretrain["test/acc"]), percent(pretrain["val/acc"]), f"{pretrain['params']:,}",
        percent(qat["test/acc"]), percent(qat["ptq/test/acc"]), f"{qat['cost/ace_reduction']:.0f}×",
        percent(prune["pruned/structured_frac"]), percent(prune["pruned/unstructured_frac"]),
        percent(prune["pruned/mixing_frac"]), percent(prune["test/acc"]), percent(finetune["test/acc"]),
        percent(crossbar["crossbar/acc_mean"]), percent(crossbar["software/acc"]), f"{crossbar['tiles']} tiles",
        f"{crossbar['cells']:,} cells", f"{crossbar['energy/pj_per_inference'] / 1e6:.2f} µJ",
        f"{crossbar['energy/ratio_int8']:.2f}×",
    ]
    missing = [value for value in stated if value not in paragraph]
    assert not missing, f"README's default-run paragraph lacks the committed {missing}"
