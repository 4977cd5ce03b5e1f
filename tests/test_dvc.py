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
    assert "Running stage 'prepare'" in first and "Running stage 'pretrain'" in first
    metrics = json.loads((project / "metrics" / "pretrain.json").read_text())
    assert {"val/acc", "test/acc", "params", "train/seconds"} <= set(metrics)
    assert (project / "models" / "pretrain.ckpt").is_file()
    assert (project / "data" / "prepared" / "meta.json").is_file()

    assert "Running stage" not in repro(project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pretrain"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = repro(project)
    assert "Running stage 'pretrain'" in third and "Running stage 'prepare'" not in third
