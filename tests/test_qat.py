import lightning
import pytest
import torch
from conftest import TINY

from pipeline import data
from pipeline.config import ConfigError, parse
from pipeline.data import read_meta
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_bit_sweep
from pipeline.steps.qat import compare, quantized_copy, starting_point
from pipeline.steps.sweep_bits import sweep_bits
from pipeline.training import ClassifierModule, build_module, evaluate, fit_classifier


def test_qat_beats_ptq_at_two_bits_and_reports_costs(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    float_module, _ = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "pretrain")
    qat = tiny.qat.model_copy(update={"bits": {"all": 2}, "epochs": 4})
    trained, metrics = compare(float_module, tiny, tmp_path / "prepared", tmp_path / "qat", qat)
    assert metrics["ptq/test/acc"] <= metrics["test/acc"]
    assert metrics["float/test/acc"] > metrics["ptq/test/acc"]
    assert metrics["cost/ace_reduction"] == (32 / 2) ** 2
    assert metrics["float/cost/size_bits"] / metrics["cost/size_bits"] == 16
    reloaded = ClassifierModule.load_from_checkpoint(tmp_path / "qat" / "best.ckpt")
    assert reloaded.bits == {"all": 2}
    fine = tiny.qat.model_copy(update={"bits": {"all": 16}})
    ptq16 = evaluate(quantized_copy(float_module, fine), tiny, tmp_path / "prepared")
    assert abs(ptq16["test/acc"] - metrics["float/test/acc"]) < 0.01  # 16 bits is as good as float


def test_deploy_target_is_evaluated_in_recurrent_mode(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    float_module = build_module(tiny, read_meta(tmp_path / "prepared"), tiny.pretrain)
    deploy = tiny.qat.model_copy(update={"target": "deploy", "bits": {"all": 6}})
    module = quantized_copy(float_module, deploy)
    assert module.eval_mode == "recurrent"
    reported = evaluate(module, tiny, tmp_path / "prepared")["test/acc"]  # calibrates the state quantizers
    x, y = load_split(tmp_path / "prepared", "test").tensors
    with torch.no_grad():
        recurrent = (module.eval()(x, "recurrent").argmax(-1) == y).float().mean().item()
    assert reported == pytest.approx(recurrent, abs=1e-6)
    torch.manual_seed(123)  # calibration must not depend on the global random state
    again = evaluate(quantized_copy(float_module, deploy), tiny, tmp_path / "prepared")
    assert again["test/acc"] == reported
    alone = evaluate(quantized_copy(float_module, deploy), tiny, tmp_path / "prepared", validate=False)
    assert alone == {"test/acc": again["test/acc"], "test/loss": again["test/loss"]}  # calibrated at the test's start


@pytest.mark.parametrize("qat,message", [
    ({"bits": {"all": 0}}, "bits.all = 0"),
    ({"bits": {"B": 4}}, "allowed: ['all', 'A', 'C', 'log_dt', 'state', 'act', 'mix', 'coder']"),
    ({"scale": "fixed"}, "clip"),
    ({"scale": "fixed", "clip": -1.0}, "clip = -1.0"),
    ({"target": "hil"}, "'paper', 'deploy' or 'chip'"),
    ({"scheme": "qs4d", "target": "deploy"}, "scheme 'qs4d' needs target: paper"),
    ({"scheme": "qs4d", "bits": {"all": 4, "state": 1}}, "state = 1 under scheme 'qs4d'"),
    ({"scheme": "theirs"}, "qat.scheme = 'theirs'"),
    ({"init": "random"}, "qat.init = 'random'"),
])
def test_bad_quantization_params_are_refused(qat, message):
    with pytest.raises(ConfigError) as error:
        parse({**TINY, "qat": qat})
    assert "qat" in str(error.value) and message in str(error.value)


def test_bit_sweep_reports_ptq_and_qat_per_component_and_width(tiny, tmp_path):
    config = parse({**TINY, "sweep_bits": {"components": ["A", "all"], "bits": [4, 2], "epochs": 1},
                    "tracking": {"enabled": False}}, base=tmp_path)
    data.prepare(config, tmp_path / "prepared")
    float_module = build_module(config, read_meta(tmp_path / "prepared"), config.pretrain)
    logged = []
    results = sweep_bits(float_module, config, tmp_path / "prepared", tmp_path / "sweep", log=logged.append)
    assert set(results) == {"float", "A", "all"} and set(results["A"]) == {"4", "2"}
    assert all(0 <= v[k] <= 1 for c in ("A", "all") for v in results[c].values() for k in ("ptq", "qat"))
    assert len(logged) == 4 and "sweep/A/2/qat" in logged[-3]
    assert plot_bit_sweep(results, tmp_path / "sweep.png").stat().st_size > 10_000


def test_qat_from_scratch_starts_from_the_weights_pretraining_started_from(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    float_module, _ = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "pretrain")
    assert starting_point(float_module, tiny, tiny.qat) is float_module
    scratch = starting_point(float_module, tiny, tiny.qat.model_copy(update={"init": "scratch"}))
    lightning.seed_everything(tiny.seed, verbose=False)
    initial = build_module(tiny, read_meta(tmp_path / "prepared"), tiny.pretrain).state_dict()
    weights = scratch.state_dict()
    assert weights.keys() == initial.keys() and all(torch.equal(weights[k], initial[k]) for k in initial)
    assert not torch.equal(weights["model.encoder.weight"], float_module.state_dict()["model.encoder.weight"])
    qat = tiny.qat.model_copy(update={"init": "scratch", "bits": {"all": 6}, "epochs": 2})
    trained, metrics = compare(float_module, tiny, tmp_path / "prepared", tmp_path / "qat", qat)
    assert trained.bits == {"all": 6} and 0 <= metrics["test/acc"] <= 1
    assert not torch.equal(trained.state_dict()["model.encoder.weight"], initial["model.encoder.weight"])  # trained
