"""Post-training quantization (PTQ) and the QAT comparison it is the baseline of."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import Logger

from pipeline import stage, tracking
from pipeline.analog.in_the_loop import ChipInTheLoop
from pipeline.config import Config, QatConfig
from pipeline.cost import model_proxies
from pipeline.data import read_meta
from pipeline.quant import Quantization
from pipeline.training import ClassifierModule, evaluate, fit, optim_params

WORKDIR = Path("runs/qat")


def quantization(qat: QatConfig) -> Quantization:
    """The quantization the QAT section describes (target `chip` quantizes as `deploy`)."""
    fields = qat.model_dump(include=set(Quantization.__dataclass_fields__))
    return Quantization(**fields | {"target": "deploy" if qat.target == "chip" else qat.target})


def in_the_loop(config: Config, qat: QatConfig) -> ChipInTheLoop | None:
    """The chip target `chip` trains on: `evaluate`'s converters, tiles and mapping, the device `chip_device`."""
    if qat.target != "chip":
        return None
    e = config.evaluate
    return ChipInTheLoop(config.chip_device().model_dump(mode="json"), e.dac_bits, e.adc_bits, e.tile_rows, e.tile_cols,
                         e.mapping, e.range_margin, tuple(qat.chip_times), e.row_gains, qat.chip_validation)


def on_chip(module: ClassifierModule, config: Config, bits: dict | None = None) -> ClassifierModule:
    """`module` (its weights and pruning masks) rebuilt to train on the chip `qat.target: chip` trains on: deploy
    quantization at `bits` (None: `qat.bits`), `evaluate`'s tiles, draws of `qat.chip_device` at `qat.chip_times`."""
    qat = config.qat.model_copy(update={"target": "chip", "bits": config.qat.bits if bits is None else bits,
                                        "scheme": "ours"})
    return module.rebuilt(quant=quantization(qat), chip=in_the_loop(config, qat))


def quantized_copy(float_module: ClassifierModule, qat: QatConfig,
                   chip: ChipInTheLoop | None = None) -> ClassifierModule:
    """A quantized classifier holding `float_module`'s weights, to be evaluated as is (PTQ) or trained (QAT) with
    the `qat` schedule; on the tiles of `chip` if given."""
    return float_module.rebuilt(quant=quantization(qat), optim=optim_params(qat), chip=chip)


def starting_point(float_module: ClassifierModule, config: Config, qat: QatConfig) -> ClassifierModule:
    """`float_module` for `qat.init: float`; for `scratch`, the same architecture freshly initialised from
    `config.seed`: the weights pretraining started from."""
    if qat.init == "float":
        return float_module
    L.seed_everything(config.seed, workers=True, verbose=False)
    return ClassifierModule(**float_module.hparams)


def train(float_module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
          qat: QatConfig, logger: Logger | None = None) -> tuple[ClassifierModule, dict]:
    """QAT from the float weights, or from scratch (`qat.init`). Returns (best-validation module, metrics)."""
    start = starting_point(float_module, config, qat)
    return fit(quantized_copy(start, qat, in_the_loop(config, qat)), config, qat, data_dir, workdir, logger)


def costs(config: Config, data_dir: str | Path, bits: dict) -> dict:
    meta = read_meta(data_dir)
    m = config.model
    return model_proxies(m.n_layers, m.d_model, m.d_state, meta["d_in"], meta["n_classes"], bits)


def compare(float_module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
            qat: QatConfig | None = None, logger: Logger | None = None) -> tuple[ClassifierModule, dict]:
    """Float vs PTQ vs QAT at the same bits: accuracies and cost proxies. Returns (QAT module, metrics)."""
    qat = qat or config.qat
    float_eval = evaluate(quantized_copy(float_module, qat.model_copy(update={"bits": {}})),
                          config, data_dir)
    ptq_eval = evaluate(quantized_copy(float_module, qat, in_the_loop(config, qat)), config, data_dir)
    trained, metrics = train(float_module, config, data_dir, workdir, qat, logger)
    float_cost, quant_cost = costs(config, data_dir, {}), costs(config, data_dir, qat.bits)
    metrics |= {f"float/{k}": v for k, v in float_eval.items()} | {f"ptq/{k}": v for k, v in ptq_eval.items()}
    for prefix, cost in (("float/cost", float_cost), ("ptq/cost", quant_cost), ("cost", quant_cost)):
        metrics |= {f"{prefix}/{k}": v for k, v in cost.items()}
    metrics |= {f"cost/{k}_reduction": float_cost[k] / quant_cost[k] for k in quant_cost}
    return trained, metrics


def run(config: Config, data: Path, float_model: Path, out: Path, metrics: Path) -> None:
    """The `qat` stage: PTQ baseline, then quantization-aware training from the float model → its checkpoint,
    metrics."""
    with tracking.stage_run(config, "qat") as tracked:
        float_module = ClassifierModule.load(float_model)
        trained, values = compare(float_module, config, data, WORKDIR, logger=tracked.lightning_logger())
        stage.publish(tracked, trained, values, data, WORKDIR, out, metrics)
        q = config.qat
        print(f"qat ({q.target}, {q.scheme}, from {q.init}, bits {q.bits}): test/acc float "
              f"{values['float/test/acc']:.4f}, PTQ {values['ptq/test/acc']:.4f}, QAT {values['test/acc']:.4f}; "
              f"ACE ÷{values['cost/ace_reduction']:.1f}")
