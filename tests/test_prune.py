import lightning
import pytest
import torch
from conftest import TINY

from pipeline import data
from pipeline.analog import WeightNoise
from pipeline.config import ConfigError, parse
from pipeline.cost import model_proxies, proxies
from pipeline.data.datamodule import load_split
from pipeline.model import S4DClassifier
from pipeline.prune import attach_masks, fractions, prune
from pipeline.prune.search import greedy, mode_candidates
from pipeline.scoring import accuracy
from pipeline.steps.prune import live_counts, pruned_copy
from pipeline.steps.qat import quantization
from pipeline.training import ClassifierModule, build_module, fit_classifier


def trained_model():
    torch.manual_seed(0)
    model = S4DClassifier(1, 3, d_model=4, d_state=6, n_layers=2).double()
    model.train()
    model(torch.randn(8, 20, 1, dtype=torch.float64))  # BatchNorm statistics away from their init
    return model.eval()


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_a_pruned_mode_contributes_nothing(mode):
    model = trained_model()
    reference = trained_model()
    with torch.no_grad():  # the same mode removed by hand: C and B̄'s source (nothing else needed for y)
        reference.blocks[1].ssm.C[2, 1] = 0.0
    layers = attach_masks(model)
    layers[1].mode.keep[2, 1] = 0.0
    x = torch.randn(3, 20, 1, dtype=torch.float64)
    assert torch.allclose(model(x, mode), reference(x, mode), atol=1e-10)
    A_bar, B_bar, C, _ = model.blocks[1].ssm.discrete()
    assert A_bar[2, 1] == 0 and B_bar[2, 1] == 0 and C[2, 1] == 0  # its block, row and column are gone


def test_masks_compose_with_quantization_and_noise_and_survive_save_and_load(tmp_path):
    config = parse({**TINY, "qat": {"bits": {"all": 3}}}, base=tmp_path)
    module = ClassifierModule(1, 10, config.model.model_dump(), config.pretrain.model_dump(),
                              quantization(config.qat), pruned=True, noise=WeightNoise(0.05, mixing=True))
    layers = attach_masks(module.model)
    _, _, before, _ = module.model.blocks[0].ssm.discrete()
    layers[0].mode.keep[0, 1] = 0.0
    layers[0].entry.keep[1, 0, 1] = 0.0
    layers[0].mix.keep[0, 0, 0] = 0.0
    _, _, C, _ = module.model.blocks[0].ssm.discrete()
    assert C[0, 1] == 0 and C[1, 0].imag == 0 and C[1, 0].real == before[1, 0].real
    assert len(torch.unique(torch.view_as_real(C.detach())[..., 0])) <= 2 ** 3 + 1  # still on the 3-bit grid
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, tmp_path / "m.ckpt")
    loaded = ClassifierModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert (loaded.quantization, loaded.weight_noise) == (module.quantization, module.weight_noise)
    assert loaded.bits == {"all": 3} and loaded.hparams.pruned
    assert torch.equal(attach_masks(loaded.model)[0].mode.keep, layers[0].mode.keep)
    x = torch.randn(2, 64, 1)
    assert torch.equal(loaded.eval()(x), module.eval()(x))
    assert fractions(attach_masks(loaded.model))["pruned/layer0/structured_frac"] == 1 / layers[0].mode.keep.numel()


def test_tolerance_zero_never_lowers_validation_accuracy(tiny, tmp_path, capsys):
    data.prepare(tiny, tmp_path / "prepared")
    float_module, _ = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "fit")
    x, y = load_split(tmp_path / "prepared", "validation").tensors
    model = pruned_copy(float_module).model
    capsys.readouterr()
    result = prune(model, x, y, "conv", tolerance=0.0)
    lines = capsys.readouterr().out.splitlines()  # one line per granularity, as each finishes
    assert [line.split(":")[0] for line in lines] == [f"prune search, {g}" for g in result["removed"]]
    assert all(f": {n} of " in line for line, n in zip(lines, result["removed"].values()))
    assert result["val_acc"] >= result["baseline_val_acc"]
    assert accuracy(model, x, y, "conv") == result["val_acc"]
    assert sum(result["removed"].values()) > 0  # something was prunable for free


def test_nothing_prunable_gives_zero_fractions():
    model = trained_model()
    layers = attach_masks(model)
    assert greedy(mode_candidates(model, layers), score=lambda: 0.0, floor=1.0) == 0
    assert greedy([], score=lambda: 1.0, floor=0.0) == 0
    assert set(fractions(layers).values()) == {0.0}


def test_costs_fall_by_the_pruned_entries(tmp_path):
    config = parse(TINY, base=tmp_path)
    module = build_module(config, {"d_in": 1, "n_classes": 10}, config.pretrain)
    pruned = pruned_copy(module)
    layers = attach_masks(pruned.model)
    H, N = config.model.d_model, config.model.d_state
    bits = {"A": 2, "C": 3, "state": 4, "act": 5, "mix": 6, "coder": 7}
    dense = model_proxies(1, H, N, 1, 10, bits)
    assert proxies(live_counts(pruned, layers), 1, 10, bits) == dense
    layers[0].mode.keep[0, :2] = 0.0     # two modes: 4 state entries, 4 C entries
    layers[0].entry.keep[1, 0, 0] = 0.0  # one more C entry
    layers[0].mix.keep.view(-1)[:2 * H] = 0.0  # a fraction 2H/2H² of the GLU weights → H of the H² counted
    cost = proxies(live_counts(pruned, layers), 1, 10, bits)
    assert dense["size_bits"] - cost["size_bits"] == 4 * 2 + 5 * 3 + H * 6
    assert dense["ace"] - cost["ace"] == 4 * (4 * 2 + 5 * 3) + H * 5 * 6
    assert dense["adc"] - cost["adc"] == 4 * 4


def test_negative_tolerance_is_refused():
    with pytest.raises(ConfigError, match="prune.tolerance = -0.1"):
        parse({**TINY, "prune": {"tolerance": -0.1}})
