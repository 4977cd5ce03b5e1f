import json

import pytest
import torch
from conftest import TINY

from pipeline import data
from pipeline.analog.calibration import program_all
from pipeline.analog.device_model import Chips
from pipeline.analog.devices import PRESETS
from pipeline.analog.in_the_loop import ChipInTheLoop, calibrate_tiles, drawn_chips, stored_ranges
from pipeline.analog.noise import noise_modules
from pipeline.analog.simulator import simulated
from pipeline.config import ConfigError, parse
from pipeline.data import read_meta
from pipeline.data.datamodule import load_split
from pipeline.model import S4DClassifier
from pipeline.quant import quantize
from pipeline.scoring import accuracy
from pipeline.steps.evaluate import crossbar_accuracy, range_batches
from pipeline.steps.finetune import finetune
from pipeline.steps.qat import compare, in_the_loop, on_chip
from pipeline.training import ClassifierModule, build_module


def chip_model(device: str = "ideal", bits: int | None = 6, rows: int = 64, cols: int = 64,
               mapping: str = "residual", dtype=torch.float32, row_gains: str = "none"
               ) -> tuple[S4DClassifier, torch.Tensor]:
    torch.manual_seed(0)
    model = S4DClassifier(3, 5, d_model=4, d_state=12, n_layers=2).to(dtype)
    quantize(model, {"A": 5, "C": 5}, target="deploy")
    ChipInTheLoop(PRESETS[device].model_dump(), bits, bits, rows, cols, mapping, row_gains=row_gains).attach(model)
    x = torch.randn(7, 20, 3, dtype=dtype)
    calibrate_tiles(model.eval(), [x])
    return model, x


@pytest.mark.parametrize("mapping,row_gains", [("full", "none"), ("residual", "none"), ("full", "inputs"),
                                               ("residual", "all")])
@pytest.mark.parametrize("rows,cols", [(64, 64), (6, 10)])  # one tile per channel; 2 modes per tile, 3 tiles
def test_the_ideal_device_gives_the_chip_models_outputs_exactly(rows, cols, mapping, row_gains):
    model, x = chip_model(rows=rows, cols=cols, mapping=mapping, row_gains=row_gains)
    programs = program_all(stored_ranges(model, rows, cols, mapping, row_gains), PRESETS["ideal"])
    assert all(bool((p.row_gain > 1).any()) == (row_gains != "none") for p in programs)
    chips = simulated(model, programs, PRESETS["ideal"], 2, 1.0, 6, 6)(x.repeat(2, 1, 1)).view(2, len(x), -1)
    own = model(x, "chip")
    assert torch.equal(chips[0], own) and torch.equal(chips[1], own)
    assert not torch.allclose(own, model(x, "recurrent"), atol=1e-4)  # the 6-bit converters do act


@pytest.mark.parametrize("mapping", ["full", "residual"])
def test_ideal_converters_give_the_recurrence_and_its_gradients(mapping):
    """Without converters the tile path is the recurrence: equal outputs and equal gradients by autograd through
    the tile matrix, the conductance program and the step loop, against autograd through S4D's own loop."""
    model, x = chip_model(bits=None, mapping=mapping, dtype=torch.float64)
    model.train()
    grads = []
    for mode in ("chip", "recurrent"):
        model.zero_grad()
        out = model(x, mode)
        out.square().sum().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (chip_out, chip_grads), (ref_out, ref_grads) = grads
    assert torch.allclose(chip_out, ref_out, rtol=1e-9, atol=1e-12)
    assert chip_grads.keys() == ref_grads.keys() and any("ssm.log_A_re" in n for n in ref_grads)
    for name, ref in ref_grads.items():
        assert torch.allclose(chip_grads[name], ref, rtol=1e-7, atol=1e-10), name


def test_gradients_through_hundreds_of_steps_stay_bounded_on_drawn_chips():
    """Over 784 steps on RRAM draws with 12-bit converters the straight-through gradient through the drawn chip's
    recurrence grew to 1e20 and more (NaN at times); through the programmed targets with a mode's parts cut
    together it stays of the order of the ideal device's."""
    torch.manual_seed(0)
    model = S4DClassifier(1, 10, d_model=4, d_state=64, n_layers=1, dt_min=0.001, dt_max=0.1)
    quantize(model, {"all": 4, "A": 8}, target="deploy")
    ChipInTheLoop(PRESETS["rram"].model_dump(), 12, 12, 64, 64, "residual").attach(model)
    x, y = torch.randn(4, 784, 1), torch.randint(0, 10, (4,))
    calibrate_tiles(model.eval(), [x])
    model.train()
    for seed in range(2):
        torch.manual_seed(seed)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x, "chip"), y).backward()
        largest = max(p.grad.abs().max() for p in model.parameters() if p.grad is not None)
        assert torch.isfinite(largest) and largest < 100, (seed, largest)


def test_training_draws_a_chip_each_pass_and_validation_uses_the_ideal_device():
    model, x = chip_model("rram")
    model.train()
    assert not torch.equal(model(x, "chip"), model(x, "chip"))
    model.eval()
    assert torch.equal(model(x, "chip"), model(x, "chip"))


def test_drawn_validation_runs_one_fixed_chip_per_seed_and_leaves_the_training_stream_alone():
    model, x = chip_model("rram")
    model.eval()
    ideal = model(x, "chip")
    torch.manual_seed(5)
    stream = torch.get_rng_state()
    with torch.no_grad(), drawn_chips(model, 3):
        first = model(x, "chip")
    assert torch.equal(torch.get_rng_state(), stream)  # training's random stream is where it was
    with torch.no_grad(), drawn_chips(model, 3):
        again = model(x, "chip")
    with torch.no_grad(), drawn_chips(model, 4):
        other = model(x, "chip")
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, ideal)
    assert torch.equal(model(x, "chip"), ideal)  # the ideal device again after the block
    config = parse({**TINY, "qat": {"target": "chip", "chip_device": "rram", "chip_validation": "drawn"}})
    assert in_the_loop(config, config.qat).validation == "drawn"
    with pytest.raises(ConfigError, match="chip_validation"):
        parse({**TINY, "qat": {"chip_validation": "chips"}})
    with pytest.raises(ValueError, match="validation = 'chips'"):
        ChipInTheLoop(PRESETS["rram"].model_dump(), validation="chips")


def test_a_training_pass_draws_one_time_after_programming_for_all_layers(monkeypatch):
    model, x = chip_model("pcm")
    ChipInTheLoop(PRESETS["pcm"].model_dump(), 6, 6, times=(1.0, 86400.0, 31536000.0)).attach(model)
    calibrate_tiles(model.eval(), [x])
    seen = []
    weights = Chips.weights
    monkeypatch.setattr(Chips, "weights", lambda chips, t: seen.append(t) or weights(chips, t))
    model.train()
    torch.manual_seed(0)
    for _ in range(12):
        model(x, "chip")
    passes = [seen[i:i + 2] for i in range(0, len(seen), 2)]  # 2 layers a pass
    assert all(a == b for a, b in passes) and {a for a, _ in passes} == {1.0, 86400.0, 31536000.0}
    seen.clear()
    model.eval()
    model(x, "chip")
    assert seen == [1.0, 1.0]  # validation: the ideal device at the first time
    with pytest.raises(ValueError, match=r"times = \(\)"):
        ChipInTheLoop(PRESETS["pcm"].model_dump(), times=())
    with pytest.raises(ConfigError, match="chip_times"):
        parse({**TINY, "qat": {"target": "chip", "chip_times": [1.0, 0.0]}})
    stored = ChipInTheLoop(PRESETS["pcm"].model_dump(mode="json"), times=(1.0, 86400.0)).stored()
    assert json.loads(json.dumps(stored)) == stored and ChipInTheLoop.of(stored).times == (1.0, 86400.0)


def test_stored_ranges_refuse_other_tiles_and_none_without_chip():
    model, _ = chip_model()
    with pytest.raises(ValueError, match="mapping, row_gains = \\(32, 64, 'residual', 'none'\\)"):
        stored_ranges(model, 32, 64, "residual")
    with pytest.raises(ValueError, match="trained in the loop on \\(64, 64, 'residual', 'none'\\)"):
        stored_ranges(model, 64, 64, "residual", "inputs")
    assert stored_ranges(S4DClassifier(3, 5, d_model=4, d_state=4), 64, 64, "residual") is None
    with pytest.raises(RuntimeError, match="calibrat"):
        fresh = S4DClassifier(3, 5, d_model=4, d_state=4)
        ChipInTheLoop(PRESETS["ideal"].model_dump()).attach(fresh)
        fresh(torch.randn(2, 5, 3), "chip")


def test_qat_target_chip_trains_on_the_tiles_and_evaluates_on_its_own_ranges(tiny, tmp_path):
    config = parse({**TINY, "qat": {"target": "chip", "chip_device": "rram", "bits": {"all": 6}, "epochs": 1},
                    "evaluate": {**TINY["evaluate"], "devices": ["ideal", "rram"], "dac_bits": 6, "adc_bits": 6,
                                 "chips": 1}, "tracking": tiny.tracking.model_dump()}, base=tmp_path)
    data.prepare(config, tmp_path / "prepared")
    float_module = build_module(config, read_meta(tmp_path / "prepared"), config.pretrain)
    trained, metrics = compare(float_module, config, tmp_path / "prepared", tmp_path / "qat")
    assert trained.eval_mode == trained.train_mode == "chip" and "ptq/test/acc" in metrics
    reloaded = ClassifierModule.load(tmp_path / "qat" / "best.ckpt")
    by_lightning = ClassifierModule.load_from_checkpoint(tmp_path / "qat" / "best.ckpt")  # the same module
    assert reloaded.hparams == by_lightning.hparams and reloaded.training == by_lightning.training
    expected = by_lightning.state_dict()
    assert reloaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in reloaded.state_dict().items())
    assert reloaded.chip.device["read_noise"] == PRESETS["rram"].read_noise and reloaded.chip.dac_bits == 6
    layers = [b.ssm.chip for b in reloaded.model.blocks]
    assert all(layer.calibrated for layer in layers)
    x, y = load_split(tmp_path / "prepared", "test").tensors
    x, y = x[:100], y[:100]
    calibration = range_batches(load_split(tmp_path / "prepared", "train").tensors[0], 256)
    curves, _ = crossbar_accuracy(reloaded, x, y, calibration, config.evaluate)
    assert curves["ideal"]["1s"]["mean"] == accuracy(reloaded.model, x, y, "chip")
    tuned, _ = finetune(reloaded, config, tmp_path / "prepared", tmp_path / "finetune")
    assert tuned.eval_mode == "chip" and not noise_modules(tuned.model)  # the chip's draws are its noise


def test_finetune_target_chip_moves_a_paper_model_onto_the_tiles(tiny, tmp_path):
    config = parse({**TINY, "qat": {"chip_device": "rram", "bits": {"all": 6}, "epochs": 1},
                    "finetune": {**TINY["finetune"], "target": "chip"},
                    "evaluate": {**TINY["evaluate"], "devices": ["ideal", "rram"], "dac_bits": 6, "adc_bits": 6,
                                 "chips": 1}, "tracking": tiny.tracking.model_dump()}, base=tmp_path)
    data.prepare(config, tmp_path / "prepared")
    float_module = build_module(config, read_meta(tmp_path / "prepared"), config.pretrain)
    paper, _ = compare(float_module, config, tmp_path / "prepared", tmp_path / "qat")
    assert paper.chip is None and paper.quantization.target == "paper"
    tuned, metrics = finetune(paper, config, tmp_path / "prepared", tmp_path / "finetune")
    assert tuned.eval_mode == tuned.train_mode == "chip" and tuned.quantization.target == "deploy"
    assert tuned.quantization.bits == paper.quantization.bits and tuned.chip.dac_bits == 6
    assert tuned.chip.device["read_noise"] == PRESETS["rram"].read_noise and not noise_modules(tuned.model)
    reloaded = ClassifierModule.load(tmp_path / "finetune" / "best.ckpt")
    x, y = load_split(tmp_path / "prepared", "test").tensors
    x, y = x[:100], y[:100]
    curves, _ = crossbar_accuracy(reloaded, x, y, [x[:8]], config.evaluate)
    assert curves["ideal"]["1s"]["mean"] == accuracy(reloaded.model, x, y, "chip") and "test/acc" in metrics


def test_chip_fine_tuning_takes_its_own_deploy_bits():
    config = parse({**TINY, "qat": {"chip_device": "rram", "bits": {"all": 8, "A": 1}},
                    "finetune": {**TINY["finetune"], "target": "chip", "chip_bits": {"all": 8, "mix": 2}}})
    torch.manual_seed(0)
    paper = ClassifierModule(1, 10, config.model.model_dump(), config.pretrain.model_dump(),
                             quant={"target": "paper", "bits": config.qat.bits})
    assert on_chip(paper, config, config.finetune.chip_bits).quantization.bits == {"all": 8, "mix": 2}
    assert on_chip(paper, config).quantization.bits == {"all": 8, "A": 1}
    with pytest.raises(ConfigError, match="chip_bits"):
        parse({**TINY, "finetune": {"chip_bits": {"B": 3}}})


def test_chip_device_is_a_known_device_with_its_overrides():
    with pytest.raises(ConfigError, match="qat.chip_device = 'reram'.*allowed \\['ideal', 'pcm', 'rram'\\]"):
        parse({**TINY, "qat": {"target": "chip", "chip_device": "reram"}})
    with pytest.raises(ConfigError, match="qat.chip_device = 'reram'"):
        parse({**TINY, "qat": {"chip_device": "reram"}, "finetune": {"target": "chip"}})
    with pytest.raises(ConfigError, match="finetune.*target"):
        parse({**TINY, "finetune": {"target": "gaussian"}})
    config = parse({**TINY, "qat": {"target": "chip", "chip_device": "rram"},
                    "evaluate": {"devices": ["rram"], "device_overrides": {"rram": {"read_noise": 0.03}}}})
    assert config.chip_device().read_noise == 0.03 and config.chip_device().g_max == PRESETS["rram"].g_max


def test_chip_training_skips_a_step_with_an_overflowing_gradient():
    def module(chip):
        return ClassifierModule(3, 5, {"d_model": 4, "d_state": 4, "n_layers": 1}, {"lr": 0.01},
                                quant={"target": "deploy", "bits": {"all": 6}} if chip else None,
                                chip=ChipInTheLoop(PRESETS["rram"].model_dump()) if chip else None)

    for chip in (True, False):
        trained = module(chip)
        optimizer = torch.optim.AdamW(trained.parameters())
        for p in trained.parameters():
            p.grad = torch.ones_like(p)
        trained.on_before_optimizer_step(optimizer)
        assert all(p.grad is not None for p in trained.parameters()) and trained.skipped_steps == 0
        next(trained.parameters()).grad[0] = float("inf")
        trained.on_before_optimizer_step(optimizer)
        assert all(p.grad is None for p in trained.parameters()) == chip and trained.skipped_steps == int(chip)
