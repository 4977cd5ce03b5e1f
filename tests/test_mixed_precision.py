import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY
from mlflow.tracking import MlflowClient

from pipeline import data, tracking
from pipeline.config import ConfigError, parse
from pipeline.steps import mixed_precision
from pipeline.steps.mixed_precision import Candidate, cheapest_passing, descend, lowered, search
from pipeline.training import fit_classifier


def test_lowered_steps_one_component_one_bit_and_respects_the_floor():
    assert lowered({"A": 3, "C": 2, "state": 4}, min_bits=2) == [{"A": 2, "C": 2, "state": 4},
                                                                 {"A": 3, "C": 2, "state": 3}]
    assert lowered({"A": 2}, min_bits=2) == []


def test_the_cheapest_passing_candidate_wins_ties_go_to_accuracy():
    cands = [Candidate({"A": 1}, 0.80, 10.0), Candidate({"C": 1}, 0.95, 12.0), Candidate({"x": 1}, 0.90, 10.0),
             Candidate({"y": 1}, 0.70, 5.0)]
    assert cheapest_passing(cands, cutoff=0.85).bits == {"x": 1}
    assert cheapest_passing(cands, cutoff=0.99) is None


def test_descent_follows_the_hand_computed_path():
    """Accuracy 1 − 0.1 per bit below 4 in A (A is sensitive), − 0.01 per bit below 4 in C; cost = 3·A + C bits.
    Cutoff 0.85: A may lose one bit (0.9), C may go to the floor (−0.02). Lowering A saves 3, C saves 1, so the
    path lowers A first, then C twice; A at 2 bits (≤ 0.8) never passes, and with C at the floor it stops."""
    def evaluate(bits, current):
        acc = 1 - 0.1 * (4 - bits["A"]) - 0.01 * (4 - bits["C"])
        return Candidate(bits, acc, 3 * bits["A"] + bits["C"])

    rounds = []
    path = descend(evaluate({"A": 4, "C": 4}, None), 0.85, 2, evaluate, lambda n, c, chosen: rounds.append(chosen))
    assert [c.bits for c in path] == [{"A": 4, "C": 4}, {"A": 3, "C": 4}, {"A": 3, "C": 3}, {"A": 3, "C": 2}]
    assert rounds[-1] is None and len(rounds) == 4


def test_search_config_is_validated():
    with pytest.raises(ConfigError, match="min_bits = 5 must be ≤ start_bits = 4"):
        parse({**TINY, "mixed_precision": {"start_bits": 4, "min_bits": 5}})
    with pytest.raises(ConfigError, match="unknown component"):
        parse({**TINY, "mixed_precision": {"components": ["A", "B"]}})
    with pytest.raises(ConfigError, match="'ace', 'size_bits', 'adc' or 'energy'"):
        parse({**TINY, "mixed_precision": {"cost": "flops"}})


def _digits(tmp_path, cost: str):
    config = parse({**TINY, "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
                    "mixed_precision": {"components": ["A", "state"], "start_bits": 3, "min_bits": 2, "epochs": 1,
                                        "tolerance": 1.0, "cost": cost}}, base=tmp_path)
    data.prepare(config, tmp_path / "data" / "prepared")
    float_module, _ = fit_classifier(config, tmp_path / "data" / "prepared", tmp_path / "float")
    return config, float_module


def test_search_by_energy_ends_at_the_floor_when_every_candidate_passes(tmp_path):
    config, float_module = _digits(tmp_path, "energy")
    result = search(float_module, config, tmp_path / "data" / "prepared", tmp_path / "work")
    assert result["path"][0]["bits"] == {"A": 3, "state": 3} and result["final"]["bits"] == {"A": 2, "state": 2}
    assert [len(r["candidates"]) for r in result["rounds"]] == [2, 1, 0]
    assert all(p["cost"] > 1e3 for p in result["path"])  # pJ per inference
    assert 0 <= result["final"]["test_acc"] <= 1


def test_stage_writes_the_path_and_logs_every_candidate_as_a_nested_run(tmp_path, monkeypatch, capsys):
    config, float_module = _digits(tmp_path, "size_bits")
    (tmp_path / "models").mkdir()
    shutil.copyfile(tmp_path / "float" / "best.ckpt", tmp_path / "models" / "pretrain.ckpt")
    monkeypatch.chdir(tmp_path)
    mixed_precision.run(config, data=Path("data/prepared"), float_model=Path("models/pretrain.ckpt"),
               metrics=Path("metrics/mixed_precision.json"), plot=Path("plots/mixed_precision.png"))
    result = json.loads((tmp_path / "metrics" / "mixed_precision.json").read_text())
    # size counts A's bits, not the state's: A is lowered first, then the state at no saving
    assert [p["bits"] for p in result["path"]] == [{"A": 3, "state": 3}, {"A": 2, "state": 3}, {"A": 2, "state": 2}]
    costs = [p["cost"] for p in result["path"]]
    assert costs[0] > costs[1] == costs[2]
    assert (tmp_path / "plots" / "mixed_precision.png").is_file()
    assert not (tmp_path / "runs" / "mixed_precision").exists()  # the candidates' checkpoints are scratch
    assert "qat.bits=" in capsys.readouterr().out
    client = MlflowClient(tracking.tracking_uri(config))
    experiment = client.get_experiment_by_name("test").experiment_id
    candidates = client.search_runs([experiment], "tags.run_role = 'candidate'")
    parent = client.search_runs([experiment], "tags.dvc_stage = 'mixed_precision' and tags.run_role = 'stage'")[0]
    assert len(candidates) == 1 + 2 + 1 and {r.data.tags["mlflow.parentRunId"] for r in candidates} == {
        parent.info.run_id}
    assert all("cost/size_bits" in r.data.metrics and "bits.A" in r.data.params for r in candidates)
    assert parent.data.metrics["final/cost_reduction"] > 1
