import json
import subprocess

import yaml

from conftest import venv_env


def repro(project) -> str:
    result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_repro_runs_the_chain_then_nothing_then_only_what_changed(project):
    first = repro(project)
    assert all(f"Running stage '{stage}'" in first
               for stage in ("prepare", "pretrain", "qat", "prune", "finetune", "evaluate"))
    metrics = json.loads((project / "metrics" / "pretrain.json").read_text())
    assert {"val/acc", "test/acc", "params", "train/seconds"} <= set(metrics)
    assert (project / "models" / "pretrain.ckpt").is_file() and (project / "models" / "qat.ckpt").is_file()
    qat = json.loads((project / "metrics" / "qat.json").read_text())
    assert {"test/acc", "ptq/test/acc", "float/test/acc", "cost/ace", "cost/ace_reduction"} <= set(qat)
    pruned = json.loads((project / "metrics" / "prune.json").read_text())
    assert {"test/acc", "val/acc", "pruned/structured_frac", "pruned/layer0/mixing_frac", "cost/ace"} <= set(pruned)
    assert (project / "data" / "prepared" / "meta.json").is_file()
    crossbar = json.loads((project / "metrics" / "crossbar.json").read_text())
    assert {"crossbar/acc_mean", "crossbar/acc_std", "software/acc", "tiles", "cells", "energy/pj_per_inference",
            "energy/digital_fp32_pj", "energy/digital_int8_pj", "crossbar/pcm/1d/acc_min"} <= set(crossbar)
    assert crossbar["energy/digital_fp32_pj"] > crossbar["energy/digital_int8_pj"]
    for device in ("rram", "pcm"):
        assert (project / "crossbar" / device / "program.npz").is_file()
    assert (project / "plots" / "energy.png").is_file() and (project / "plots" / "crossbar_accuracy.png").is_file()

    assert "Running stage" not in repro(project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pretrain"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = repro(project)
    assert "Running stage 'pretrain'" in third and "Running stage 'prepare'" not in third

    params["qat"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = repro(project)
    assert "Running stage 'qat'" in fourth and "Running stage 'pretrain'" not in fourth
