"""MLflow tracking: one parent run per pipeline run, one child run per stage.

A pipeline run is identified by `pipeline_id` = hash of every parameter + git commit, so the stages that
`dvc repro` runs for one set of params and one commit land under one parent. Every run is tagged `pipeline_id`,
`git_sha` (and MLflow's `mlflow.source.git.commit`), `git_dirty`, `dvc_exp_name` (inside `dvc exp run`) and
(children) `dvc_stage`. The parent is RUNNING while a stage runs and then takes that stage's status; it carries
the chain's key metrics (`KEY_METRICS`) as `<stage>/<metric>`. If the store cannot be used, the stage goes on
without it after one warning.

The store: `tracking.uri` in params, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<project>/mlflow.db`, where the
project is `$DVC_ROOT` (the workspace, also when `dvc exp run --temp` or `dvc queue` runs the stage in a temporary
copy) or else the folder of params.yaml.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.config import Config

if TYPE_CHECKING:
    from pipeline.stage_logger import StageLogger


def _git(cwd: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_sha(cwd: Path) -> str:
    return _git(cwd, "rev-parse", "HEAD") or "unknown"


CODE = ("pipeline", "stages", "dvc.yaml", "sweeps/dvc.yaml", "requirements.lock")  # what makes a run's code


def git_dirty(cwd: Path) -> str:
    """'true' when the tracked code (`CODE`) differs from the commit, i.e. the run's code is not exactly `git_sha`.
    Outputs are left out: DVC removes a stage's tracked metrics before the stage runs; params are in the run's id."""
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no", "--", *CODE)
    return "unknown" if status is None else str(bool(status)).lower()


def pipeline_id(config: Config) -> str:
    return f"{config.fingerprint()[:12]}-{git_sha(config.path('.'))[:12]}"


KEY_METRICS = {  # stage → metrics copied to the pipeline's parent run
    "pretrain": ("test/acc",),
    "qat": ("ptq/test/acc", "test/acc", "cost/ace_reduction"),
    "prune": ("test/acc", "pruned/structured_frac"),
    "finetune": ("test/acc",),
    "evaluate": ("crossbar/acc_mean", "energy/pj_per_inference"),
}
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the UI opens on the runs table


def project_root(config: Config) -> Path:
    root = os.environ.get("DVC_ROOT")
    return Path(root).resolve() if root else config.path(".")


def default_uri(config: Config) -> str:
    return f"sqlite:///{project_root(config) / 'mlflow.db'}"


def tracking_uri(config: Config) -> str:
    return config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(config)


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} → {"a.b": "1"}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def mlflow_client(uri: str):
    """An MLflow client of the store at `uri`. MLflow's usage telemetry is off unless MLFLOW_DISABLE_TELEMETRY says
    otherwise (MLflow reads it when it is first imported, i.e. here)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


class StageRun:
    """Logging handle of one stage's MLflow run; every call is a no-op when tracking is off or broken."""

    def __init__(self, client=None, run_id: str | None = None, uri: str | None = None):
        self.client, self.run_id, self.uri = client, run_id, uri
        self.last: dict[str, float] = {}  # the last value logged of each metric

    def __getstate__(self) -> dict:  # DDP's spawned processes get the URI and open their own client
        return {"run_id": self.run_id, "uri": self.uri if self.active else None}

    def __setstate__(self, state: dict) -> None:
        self.run_id, self.uri, self.last = state["run_id"], state["uri"], {}
        self.client = mlflow_client(self.uri) if self.uri else None

    @property
    def active(self) -> bool:
        return self.client is not None

    def _call(self, method: str, *args, **kwargs) -> None:
        if not self.active:
            return
        try:
            getattr(self.client, method)(self.run_id, *args, **kwargs)
        except Exception as error:  # tracking must never break the stage itself
            warnings.warn(f"MLflow {method} failed ({error}); tracking is off for the rest of this stage",
                          stacklevel=2)
            self.client = None

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.last |= numbers
        if not self.active:
            return
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        self._call("log_batch", metrics=[Metric(k, v, now, step or 0) for k, v in numbers.items()])

    def lightning_logger(self) -> StageLogger | None:
        """Lightning's MLflow logger writing each training epoch's metrics into this run (`StageLogger`); None when
        tracking is off. Imported here, by the stages that train: Lightning takes seconds to import."""
        from pipeline.stage_logger import StageLogger

        return StageLogger(tracking_uri=self.uri, run_id=self.run_id) if self.active else None

    def log_dataset(self, data_dir: str | Path, context: str = "training") -> None:
        """The prepared data set as the run's input: its name, folder and checksum (meta.json)."""
        if not self.active:
            return
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        meta = json.loads((Path(data_dir) / "meta.json").read_text())
        dataset = MetaDataset(LocalArtifactDatasetSource(str(Path(data_dir).resolve())), name=meta["name"],
                              digest=meta["checksum"][:36])
        self._call("log_inputs", datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                        tags=[InputTag("mlflow.data.context", context)])])

    def log_model(self, model, name: str = "model") -> None:
        """`model` (a torch module) through mlflow.pytorch, listed under the run's models."""
        if not self.active:
            return
        try:
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its note on pickle, once per stage
            with mlflow.start_run(run_id=self.run_id):  # pickle: pt2 would need a traced example input
                mlflow.pytorch.log_model(model, name=name, pip_requirements=[f"torch=={torch_version()}"],
                                         serialization_format="pickle")
        except Exception as error:
            warnings.warn(f"MLflow log_model failed ({error}); the checkpoint is still logged as an artefact",
                          stacklevel=2)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path)

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            self._call("set_tag", key, str(value))

    @contextmanager
    def child(self, name: str, params: dict) -> Iterator[StageRun]:
        """A run nested under this one (e.g. one candidate of a search) with `params`; FINISHED at the end."""
        nested = StageRun()
        if self.active:
            try:
                from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

                parent = self.client.get_run(self.run_id)
                inherited = {k: parent.data.tags[k] for k in ("pipeline_id", "git_sha", "dvc_stage")
                             if k in parent.data.tags}
                run = self.client.create_run(parent.info.experiment_id, run_name=name, tags={
                    **inherited, "run_role": "candidate", MLFLOW_PARENT_RUN_ID: self.run_id})
                nested = StageRun(self.client, run.info.run_id, self.uri)
                _log_params(self.client, run.info.run_id, {k: str(v) for k, v in params.items()})
            except Exception as error:
                warnings.warn(f"MLflow child run {name!r} not created ({error})", stacklevel=2)
        yield nested
        nested._call("set_terminated", "FINISHED")


def torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[start:start + 100])


REACH_TIMEOUT = 3.0  # s: a tracking server that does not answer within this is taken as down


def check_reachable(uri: str) -> None:
    """Raise ConnectionError at once if an http(s) tracking server does not accept a connection (MLflow's own
    client retries for minutes)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=REACH_TIMEOUT).close()
    except OSError as error:
        raise ConnectionError(f"no answer from {parts.hostname}:{port} within {REACH_TIMEOUT:g} s ({error})") from None


def _open(config: Config, stage: str):
    for name in ("alembic", "mlflow.store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri(config)
    check_reachable(uri)
    client = mlflow_client(uri)
    from mlflow.utils import mlflow_tags

    experiment = client.get_experiment_by_name(config.tracking.experiment)
    if experiment is None:  # the default store keeps its artefacts beside the database
        artifacts = (project_root(config) / "mlartifacts").as_uri() if uri == default_uri(config) else None
        experiment_id = client.create_experiment(config.tracking.experiment, artifact_location=artifacts)
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
    else:
        experiment_id = experiment.experiment_id
    pid, sha = pipeline_id(config), git_sha(config.path("."))
    tags = {"pipeline_id": pid, "git_sha": sha, mlflow_tags.MLFLOW_GIT_COMMIT: sha,
            "git_dirty": git_dirty(config.path(".")), mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL"}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    params = flatten(config.model_dump(mode="json"))
    found = client.search_runs([experiment_id], f"tags.pipeline_id = '{pid}' and tags.run_role = 'pipeline'",
                               max_results=1)
    if found:
        parent_id = found[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
    else:
        parent = client.create_run(experiment_id, run_name=f"pipeline {pid}", tags={
            **tags, "run_role": "pipeline", mlflow_tags.MLFLOW_SOURCE_NAME: "dvc.yaml"})
        parent_id = parent.info.run_id
        _log_params(client, parent_id, params)
    child = client.create_run(experiment_id, run_name=stage, tags={
        **tags, "dvc_stage": stage, "run_role": "stage", mlflow_tags.MLFLOW_SOURCE_NAME: f"stages/{stage}.py",
        mlflow_tags.MLFLOW_PARENT_RUN_ID: parent_id})
    _log_params(client, child.info.run_id, params)
    return client, child.info.run_id, parent_id


@contextmanager
def stage_run(config: Config, stage: str) -> Iterator[StageRun]:
    """Child run of the pipeline's parent run for `stage`; marked FINISHED, or FAILED if the stage raises."""
    if not config.tracking.enabled:
        yield StageRun()
        return
    try:
        client, run_id, parent_id = _open(config, stage)
    except Exception as error:  # a broken store must not cost the user the stage's outputs
        print(f"WARNING: MLflow tracking store {tracking_uri(config)} unavailable ({type(error).__name__}: "
              f"{error}); the stage runs without tracking", flush=True)
        yield StageRun()
        return
    run = StageRun(client, run_id, tracking_uri(config))
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        if run.active:
            try:
                client.set_terminated(run_id, status)
                key = {f"{stage}/{k}": run.last[k] for k in KEY_METRICS.get(stage, ()) if k in run.last}
                StageRun(client, parent_id).log_metrics(key)
                client.set_terminated(parent_id, status)
            except Exception as error:
                print(f"WARNING: could not close MLflow run {run_id}: {error}", flush=True)
