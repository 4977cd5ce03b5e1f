import pytest

from pipeline import data
from pipeline.config import ConfigError, parse
from pipeline.quant.ptq import compare, quantized_copy
from pipeline.training import ClassifierModule, evaluate, fit_classifier

from conftest import TINY


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
    assert reloaded.hparams.quant["bits"] == {"all": 2}
    fine = tiny.qat.model_copy(update={"bits": {"all": 16}})
    ptq16 = evaluate(quantized_copy(float_module, tiny, tmp_path / "prepared", fine), tiny, tmp_path / "prepared")
    assert abs(ptq16["test/acc"] - metrics["float/test/acc"]) < 0.01  # 16 bits is as good as float


@pytest.mark.parametrize("qat,message", [
    ({"bits": {"all": 0}}, "bits.all = 0"),
    ({"bits": {"B": 4}}, "allowed: ['all', 'A', 'C', 'log_dt', 'state', 'act', 'mix', 'coder']"),
    ({"scale": "fixed"}, "clip"),
    ({"scale": "fixed", "clip": -1.0}, "clip = -1.0"),
    ({"target": "chip"}, "'paper' or 'deploy'"),
])
def test_bad_quantization_params_are_refused(qat, message):
    with pytest.raises(ConfigError) as error:
        parse({**TINY, "qat": qat})
    assert "qat" in str(error.value) and message in str(error.value)
