import ast
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, import_closure, venv_env

PIPELINES = ("dvc.yaml", "sweeps/dvc.yaml")


def stages():
    for pipeline in PIPELINES:
        for name, stage in yaml.safe_load((ROOT / pipeline).read_text())["stages"].items():
            yield pytest.param(stage, id=f"{pipeline}:{name}")


def declared(stage: dict, *sections: str) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for s in sections for e in stage.get(s, [])}


@pytest.mark.parametrize("stage", stages())
def test_every_stage_depends_on_its_import_closure(stage):
    script = shlex.split(stage["cmd"])[1]
    deps = declared(stage, "deps")
    closure = import_closure(ROOT / script)
    missing = [f for f in sorted(closure) if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
    assert not missing, f"{script}: imported but not in deps: {missing}"
    code = [d for d in deps if d.startswith(("pipeline", "stages/"))]
    extra = [d for d in code if d not in closure and not ((ROOT / d).is_dir() and {
        p.relative_to(ROOT).as_posix() for p in (ROOT / d).rglob("*.py")} <= closure)]
    assert not extra, f"{script}: deps it does not run (moved, removed, or only partly imported): {extra}"


@pytest.mark.parametrize("stage", stages())
def test_every_path_in_the_command_is_declared(stage):
    words = shlex.split(stage["cmd"])
    given = dict(zip(words[2::2], words[3::2]))
    assert all(flag.startswith("--") for flag in given) and len(words) % 2 == 0
    files = declared(stage, "deps", "outs", "metrics", "plots")
    for flag, path in given.items():
        if flag == "--metrics-dir":  # the report reads its INPUTS from there: each must be a dep
            tree = ast.parse((ROOT / "pipeline" / "steps" / Path(words[1]).name).read_text())  # the stage's step
            inputs = next(ast.literal_eval(n.value) for n in tree.body
                          if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "INPUTS")
            assert {f"{path}/{name}.json" for name in inputs} <= declared(stage, "deps")
        else:
            assert path in files, f"{flag} {path} is neither a dep nor an output"


def test_sweep_results_stay_out_of_the_default_metrics_and_plots():
    sweeps = yaml.safe_load((ROOT / "sweeps/dvc.yaml").read_text())["stages"].values()
    assert not any(stage.get("metrics") or stage.get("plots") for stage in sweeps)


PARAMS_FILES = ["params.yaml", *(f"presets/{p.name}" for p in sorted((ROOT / "presets").glob("*.yaml")))]


@pytest.mark.parametrize("params", PARAMS_FILES)
def test_setting_one_key_with_dvc_rewrites_only_that_line(params, tmp_path):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls

    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / params).read_text())
    apply_overrides(copy, ["pretrain.lr=0.123"])
    before, after = (ROOT / params).read_text().splitlines(), copy.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1, changed
    assert changed[0][1].split("#")[0].strip() == "lr: 0.123"


def repro(project) -> str:
    result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stale(project) -> set[str]:
    status = subprocess.run(["dvc", "status", "--json"], cwd=project, capture_output=True, text=True, env=venv_env())
    assert status.returncode == 0, status.stderr
    return set(json.loads(status.stdout))


def test_repro_runs_the_chain_then_nothing_then_only_what_changed(project):
    first = repro(project)
    chain = ("check_params", "prepare", "pretrain", "qat", "sweep_bits", "prune", "finetune", "evaluate", "report")
    assert all(f"Running stage '{stage}'" in first for stage in chain)
    metrics = json.loads((project / "metrics" / "pretrain.json").read_text())
    assert {"val/acc", "test/acc", "params", "train/epochs"} <= set(metrics)
    assert not {"train/seconds", "train/samples_per_s"} & set(metrics)  # wall times live in MLflow only
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
    assert crossbar["energy/pj_per_inference"] == crossbar["energy/multibit/pj_per_inference"]  # the default
    assert crossbar["energy/bit_serial/pj_per_inference"] > crossbar["energy/multibit/pj_per_inference"]  # b reads
    assert crossbar["energy/bit_serial/ratio_int8"] == pytest.approx(
        crossbar["energy/digital_int8_pj"] / crossbar["energy/bit_serial/pj_per_inference"])
    for device in ("rram", "pcm"):
        assert (project / "crossbar" / device / "program.npz").is_file()
    assert (project / "plots" / "energy.png").is_file() and (project / "plots" / "crossbar_accuracy.png").is_file()

    report = (project / "report" / "report.md").read_text()
    for section in ("From float to the fine-tuned model", "Bits per component (PTQ vs QAT)", "Pruning",
                    "Accuracy under weight noise", "On simulated crossbars", "Accuracy vs energy"):
        assert f"\n## {section}\n" in report
    assert "![pareto](../plots/pareto.png)" in report
    costs = json.loads((project / "metrics" / "report.json").read_text())
    assert costs["float/ace"] > costs["QAT/ace"] >= costs["pruned/ace"]
    assert abs(costs["PTQ/energy_pj"] / costs["QAT/energy_pj"] - 1) < 0.05  # same bits and tiles
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=project, capture_output=True, text=True,
                           env=venv_env())
    assert shown.returncode == 0, shown.stderr
    for name in ("costs", "sweep_bits", "pruning", "noise_robustness", "crossbar_accuracy", "energy", "pareto"):
        assert f"plots/{name}.png" in shown.stdout

    assert "Running stage" not in repro(project)
    assert stale(project) == set()
    cache = project / "pipeline" / "model" / "__pycache__"  # bytecode Python writes beside a directory dep
    cache.mkdir(exist_ok=True)
    (cache / "s4d.cpython-311.pyc").write_bytes(b"stale bytecode")
    assert stale(project) == set()
    forced = subprocess.run(["dvc", "repro", "-f", "-s", "pretrain"], cwd=project, capture_output=True, text=True,
                            env=venv_env())
    assert forced.returncode == 0 and "Running stage 'pretrain'" in forced.stdout, forced.stderr
    assert forced.stdout.count("Running stage") == 1  # -s: the stage alone, not the stages before it
    assert stale(project) == set()  # retrained to the same weights: same bytes, nothing after it goes stale

    kept = {path: path.read_bytes() for path in sorted((project / "models").iterdir())
            + sorted((project / "metrics").iterdir()) + sorted((project / "plots").iterdir())}
    good = (project / "params.yaml").read_text()
    for bad in (good.replace("all: 4", "all: 0"), good + "evalute:\n  chips: 2\n"):  # a bad value, a typo'd section
        (project / "params.yaml").write_text(bad)
        rejected = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True, env=venv_env())
        assert rejected.returncode != 0 and ("bits.all = 0" in rejected.stderr or "evalute" in rejected.stderr)
        assert "Running stage 'prepare'" not in rejected.stdout
        assert all(path.read_bytes() == content for path, content in kept.items())  # nothing lost
    (project / "params.yaml").write_text(good)
    again = repro(project)  # only the check runs again; its output has the same bytes, so nothing after it re-runs
    assert "Running stage 'check_params'" in again and again.count("Running stage") == 1
    assert stale(project) == set()

    simulator = project / "pipeline" / "analog" / "simulator.py"  # only the stages that import it go stale
    simulator.write_text(simulator.read_text() + "\n# changed\n")
    assert stale(project) == {"evaluate", "report"}
    simulator.write_text(simulator.read_text().removesuffix("\n# changed\n"))
    assert stale(project) == set()

    chip_key = good.replace("tile_rows: 64", "tile_rows: 32")  # read by chip QAT and chip fine-tuning, not by prune
    (project / "params.yaml").write_text(chip_key)
    assert stale(project) == {"check_params", "qat", "finetune", "evaluate", "report"}
    (project / "params.yaml").write_text(good)
    assert stale(project) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["epochs"], params["sweep_bits"]["bits"] = 2, [3]  # two branches of the chain
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale(project) == {"check_params", "sweep_bits", "finetune", "report"}  # evaluate: after finetune


def test_queued_experiment_logs_into_the_workspace_store(project):
    """`dvc queue` runs an experiment in a temporary copy; its MLflow runs must land in the workspace's store."""
    from mlflow.tracking import MlflowClient

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tracking"] = {"experiment": "queued"}  # the default store: <project>/mlflow.db
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in venv_env().items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    for command in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                    ["dvc", "exp", "run", "--queue", "-n", "queued-seed1", "-S", "seed=1", "prepare"],
                    ["dvc", "exp", "run", "--run-all"]):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("queued")
    runs = client.search_runs([experiment.experiment_id], "tags.dvc_exp_name = 'queued-seed1'")
    assert {r.data.tags.get("dvc_stage") for r in runs} == {None, "prepare"}  # the parent and the stage
    assert all(r.data.params["seed"] == "1" for r in runs)
