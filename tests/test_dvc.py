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
               for stage in ("prepare", "pretrain", "qat", "sweep_bits", "prune", "finetune", "evaluate", "report"))
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

    report = (project / "report" / "report.md").read_text()
    for section in ("From float to the pruned model", "Bits per component (PTQ vs QAT)", "Pruning",
                    "Accuracy under weight noise", "On simulated crossbars", "Runs of the experiment"):
        assert f"\n## {section}\n" in report
    assert "![pareto](../plots/pareto.png)" in report and "| pipeline |" in report  # the MLflow runs
    costs = json.loads((project / "metrics" / "report.json").read_text())
    assert costs["float/ace"] > costs["QAT/ace"] >= costs["pruned/ace"]
    assert abs(costs["PTQ/energy_pj"] / costs["QAT/energy_pj"] - 1) < 0.05  # same bits and tiles
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=project, capture_output=True, text=True,
                           env=venv_env())
    assert shown.returncode == 0, shown.stderr
    for name in ("costs", "sweep_bits", "pruning", "noise_robustness", "crossbar_accuracy", "energy", "pareto"):
        assert f"plots/{name}.png" in shown.stdout

    assert "Running stage" not in repro(project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["epochs"], params["sweep_bits"]["bits"] = 2, [3]  # two branches of the chain
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = repro(project)
    assert all(f"Running stage '{s}'" in third for s in ("sweep_bits", "finetune", "evaluate", "report"))
    assert all(f"Running stage '{s}'" not in third for s in ("prepare", "pretrain", "qat", "prune"))
