import pytest
from conftest import TINY
from mlflow.tracking import MlflowClient

from pipeline import data, tracking
from pipeline.config import parse
from pipeline.training import fit_classifier


def runs_of(config):
    client = MlflowClient(tracking.tracking_uri(config))
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    return client, client.search_runs([experiment.experiment_id])


def test_stages_are_children_of_one_pipeline_run(tiny, tmp_path):
    artefact = tmp_path / "out.json"
    artefact.write_text("{}")
    for stage in ("prepare", "pretrain"):
        with tracking.stage_run(tiny, stage) as run:
            run.log_metrics({"val/acc": 0.5}, step=0)
            run.log_metrics({"val/acc": 0.7}, step=1)
            run.log_artifact(artefact)
    client, runs = runs_of(tiny)
    parents = [r for r in runs if r.data.tags.get("run_role") == "pipeline"]
    children = {r.data.tags["dvc_stage"]: r for r in runs if r.data.tags.get("run_role") == "stage"}
    assert len(parents) == 1 and set(children) == {"prepare", "pretrain"}
    pid = tracking.pipeline_id(tiny)
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["pipeline_id"] == pid and child.data.tags["git_sha"]
        assert child.data.tags["git_dirty"] in ("true", "false", "unknown")
        assert child.info.status == "FINISHED"
        assert child.data.params["model.d_model"] == "16" and child.data.params["data.name"] == "digits"
        assert [m.value for m in client.get_metric_history(child.info.run_id, "val/acc")] == [0.5, 0.7]
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["out.json"]
        assert child.data.tags["mlflow.source.git.commit"] == child.data.tags["git_sha"]
    experiment = client.get_experiment_by_name(tiny.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on its runs


def test_parent_run_carries_key_metrics_and_the_last_stage_status(tiny):
    with tracking.stage_run(tiny, "pretrain") as run:
        run.log_metrics({"test/acc": 0.5, "train/seconds": 3.0})
        run.log_metrics({"test/acc": 0.75})
    client, runs = runs_of(tiny)
    parent = next(r for r in runs if r.data.tags.get("run_role") == "pipeline")
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"pretrain/test/acc": 0.75}
    with pytest.raises(RuntimeError):
        with tracking.stage_run(tiny, "evaluate"):
            raise RuntimeError("boom")
    assert client.get_run(parent.info.run_id).info.status == "FAILED"


def test_store_location_from_params_environment_or_dvc_root(tmp_path, monkeypatch):
    config = parse(TINY, base=tmp_path / "copy")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri(config) == f"sqlite:///{tmp_path / 'copy' / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "workspace"))  # dvc exp run --temp: the workspace, not the copy
    assert tracking.tracking_uri(config) == f"sqlite:///{tmp_path / 'workspace' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(config) == "http://127.0.0.1:5000"
    explicit = parse({**TINY, "tracking": {"uri": f"sqlite:///{tmp_path / 'own.db'}"}}, base=tmp_path)
    assert tracking.tracking_uri(explicit) == f"sqlite:///{tmp_path / 'own.db'}"


def test_changed_params_start_a_new_pipeline_run(tiny, tmp_path):
    other = parse({**TINY, "seed": 1, "tracking": tiny.tracking.model_dump()}, base=tmp_path)
    assert tracking.pipeline_id(other) != tracking.pipeline_id(tiny)
    for config in (tiny, other):
        with tracking.stage_run(config, "pretrain"):
            pass
    _, runs = runs_of(tiny)
    assert len([r for r in runs if r.data.tags.get("run_role") == "pipeline"]) == 2


def test_failed_stage_marks_its_run_failed(tiny):
    with pytest.raises(RuntimeError):
        with tracking.stage_run(tiny, "pretrain"):
            raise RuntimeError("boom")
    _, runs = runs_of(tiny)
    assert [r.info.status for r in runs if r.data.tags.get("dvc_stage") == "pretrain"] == ["FAILED"]


def test_unusable_store_warns_once_and_the_stage_goes_on(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    config = parse({**TINY, "tracking": {"uri": f"sqlite:///{tmp_path / 'a_file' / 'mlflow.db'}"}}, base=tmp_path)
    with tracking.stage_run(config, "pretrain") as run:
        run.log_metrics({"val/acc": 1.0})
        ran = True
    assert ran and not run.active
    assert capsys.readouterr().out.count("WARNING") == 1


def test_tracking_server_that_is_down_is_given_up_within_seconds(tmp_path, capsys):
    import time

    config = parse({**TINY, "tracking": {"uri": "http://127.0.0.1:9"}}, base=tmp_path)  # nothing listens on port 9
    start = time.perf_counter()
    with tracking.stage_run(config, "pretrain") as run:
        run.log_metrics({"val/acc": 1.0})
    assert time.perf_counter() - start < 2 * tracking.REACH_TIMEOUT and not run.active
    assert capsys.readouterr().out.count("WARNING") == 1


def test_git_dirty_means_changed_code_not_changed_outputs(tmp_path):
    import subprocess

    (tmp_path / "pipeline").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "pipeline" / "m.py").write_text("x = 1\n")
    (tmp_path / "metrics" / "qat.json").write_text("{}\n")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    (tmp_path / "metrics" / "qat.json").unlink()  # as DVC does before the stage runs
    assert tracking.git_dirty(tmp_path) == "false"
    (tmp_path / "pipeline" / "m.py").write_text("x = 2\n")
    assert tracking.git_dirty(tmp_path) == "true"


def test_flatten():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2]}) == {"a.b": "1", "a.c.d": "None",
                                                                             "e": "[1, 2]"}


def test_a_stage_run_survives_pickling_for_ddp_processes(tiny):
    import pickle

    with tracking.stage_run(tiny, "pretrain") as run:
        copy = pickle.loads(pickle.dumps(run))  # what a spawned training process receives
        copy.log_metrics({"val/acc": 0.25}, step=0)
    client, runs = runs_of(tiny)
    child = next(r for r in runs if r.data.tags.get("dvc_stage") == "pretrain")
    assert child.data.metrics["val/acc"] == 0.25
    assert pickle.loads(pickle.dumps(tracking.StageRun())).active is False


def test_training_logs_each_epoch_into_the_stage_run_through_lightning(tiny, tmp_path):
    config = tiny.model_copy(update={"pretrain": tiny.pretrain.model_copy(update={"epochs": 2})})
    data.prepare(config, tmp_path / "prepared")
    with tracking.stage_run(config, "pretrain") as run:
        fit_classifier(config, tmp_path / "prepared", tmp_path / "work", logger=run.lightning_logger())
        client = MlflowClient(tracking.tracking_uri(config))
        assert client.get_run(run.run_id).info.status == "RUNNING"  # open until the stage ends
    history = client.get_metric_history(run.run_id, "val/acc")
    assert len(history) == 2 and history[0].step < history[1].step
    assert len(client.get_metric_history(run.run_id, "train/samples_per_s")) == 2
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert tracking.StageRun().lightning_logger() is None  # tracking off: no logger
