import pytest
import torch
from conftest import TINY

from pipeline import data
from pipeline.analog import Noise, WeightNoise, attach_noise, noise_modules, set_noise
from pipeline.config import ConfigError, parse
from pipeline.data.datamodule import load_split
from pipeline.model import S4DClassifier
from pipeline.prune import attach_masks
from pipeline.quant import quantize
from pipeline.steps.finetune import finetune, noisy_copy, robustness
from pipeline.training import fit_classifier


def test_noise_std_is_relative_to_the_tensor_range_and_redrawn():
    x = torch.linspace(-1.0, 3.0, 200_000)
    noise = Noise(0.05)
    first, second = noise(x) - x, noise(x) - x
    assert first.std().item() == pytest.approx(0.05 * 4.0, rel=0.02)
    assert not torch.equal(first, second)
    assert torch.equal(Noise(0.0)(x), x)
    with pytest.raises(ValueError, match="sigma"):
        Noise(-0.1)


def test_noise_never_makes_a_long_kernel_overflow():
    torch.manual_seed(0)
    model = S4DClassifier(1, 3, d_model=8, d_state=32, n_layers=1, dt_min=1e-4, dt_max=1e-3)
    attach_noise(model, 0.05)
    ssm = model.blocks[0].ssm
    assert (ssm.discrete()[0].abs() > 1).any()  # some slow modes are pushed outside the unit circle
    assert torch.isfinite(ssm.kernel(4096)).all()


def test_noise_hits_every_crossbar_tensor_but_not_pruned_cells():
    torch.manual_seed(0)
    model = quantize(S4DClassifier(1, 3, d_model=4, d_state=6, n_layers=2), {"all": 4}, target="deploy")
    layers = attach_masks(model)
    layers[0].mode.keep[1, 2] = 0.0
    clean = model.blocks[0].ssm.discrete()
    noises = attach_noise(model, 0.1, mixing=True)
    assert len(noises) == 2 * 5
    noisy = model.blocks[0].ssm.discrete()
    for before, after in zip(clean, noisy):
        assert not torch.equal(before, after)
    A_bar, B_bar, C, _ = noisy
    assert A_bar[1, 2] == 0 and B_bar[1, 2] == 0 and C[1, 2] == 0  # a removed cell has no device to perturb
    set_noise(model, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(clean, model.blocks[0].ssm.discrete()))


def test_noise_aware_finetune_and_robustness_curve(tiny, tmp_path):
    config = parse({**TINY, "finetune": {"sigma": 0.05, "epochs": 1}}, base=tmp_path)
    data.prepare(config, tmp_path / "prepared")
    module, _ = fit_classifier(config, tmp_path / "prepared", tmp_path / "pretrain")
    tuned, metrics = finetune(module, config, tmp_path / "prepared", tmp_path / "ft")
    assert {n.sigma for n in noise_modules(tuned.model)} == {0.0}  # reloaded best checkpoint: noise off
    assert tuned.weight_noise == WeightNoise(0.05) and "test/acc" in metrics
    assert tuned.hparams.noise == {"sigma": 0.05, "mixing": False, "protocol": "crossbar"}  # stored as a dict
    x, y = load_split(tmp_path / "prepared", "test").tensors
    curve = robustness(tuned, x, y, [0.0, 0.5], draws=3, seed=1)
    assert curve["0"]["std"] == 0 and curve["0.5"]["std"] > 0
    assert curve["0.5"]["mean"] < curve["0"]["mean"]
    assert robustness(tuned, x, y, [0.5], draws=3, seed=1) == {"0.5": curve["0.5"]}  # seeded draws
    assert noisy_copy(tuned) is tuned
    paper = robustness(tuned, x, y, [0.0, 0.5], draws=3, seed=1, protocol="paper")
    assert paper["0"] == curve["0"] and paper["0.5"] != curve["0.5"]  # other tensors perturbed
    assert noisy_copy(tuned, protocol="paper").weight_noise.protocol == "paper"


def test_paper_noise_perturbs_only_continuous_a_each_part_by_its_own_range():
    torch.manual_seed(0)
    model = S4DClassifier(1, 3, d_model=4, d_state=64, n_layers=1)
    ssm = model.blocks[0].ssm
    (A, dt), (_, B_bar, C, D) = ssm.continuous(), ssm.discrete()
    noises = attach_noise(model, 0.02, protocol="paper")
    assert len(noises) == 2 and set(ssm.taps) >= {"A_re", "A_im"} and "A_bar" not in ssm.taps
    draws = torch.stack([ssm.continuous()[0] - A for _ in range(400)])
    for part, values in ((draws.real, A.real), (draws.imag, A.imag)):  # Re and Im: each its own range
        assert part.std().item() == pytest.approx(0.02 * (values.max() - values.min()).item(), rel=0.05)
    _, B_noisy, C_noisy, D_noisy = ssm.discrete()
    assert torch.equal(ssm.continuous()[1], dt) and torch.equal(C_noisy, C) and torch.equal(D_noisy, D)
    assert not torch.equal(B_noisy, B_bar)  # B̄ = (Ā − 1)/A follows the perturbed A
    with pytest.raises(ValueError, match="protocol = 'hardware'"):
        WeightNoise(0.01, protocol="hardware")
    with pytest.raises(ConfigError, match="noise_protocol"):
        parse({**TINY, "finetune": {"noise_protocol": "hardware"}})
    with pytest.raises(ConfigError, match="eval_protocols"):
        parse({**TINY, "finetune": {"eval_protocols": []}})


def test_bad_noise_params_are_refused():
    with pytest.raises(ConfigError, match="finetune.sigma = -0.01"):
        parse({**TINY, "finetune": {"sigma": -0.01}})
    with pytest.raises(ConfigError, match="finetune.draws = 0"):
        parse({**TINY, "finetune": {"draws": 0}})
