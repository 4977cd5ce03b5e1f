import copy

import pytest
import torch

from pipeline.model import S4D, S4DClassifier
from pipeline.quant import Quantizer, quantize
from pipeline.quant.attach import PAPER

ALL_FLOAT = dict.fromkeys(PAPER)


def effective(model: S4DClassifier) -> dict:
    """The tensors the model computes with (after its taps), for the first layer."""
    ssm = model.blocks[0].ssm
    A, dt = ssm.continuous()
    with torch.no_grad():
        block = model.blocks[0]
        return {"A": A, "dt": dt, "C": ssm.output_matrix(), "mix": block.taps("mix", block.mix.weight),
                "encoder": model.taps("encoder", model.encoder.weight),
                "decoder": model.taps("decoder", model.decoder.weight)}


CHANGES = {"A": {"A"}, "C": {"C"}, "log_dt": {"dt"}, "mix": {"mix"}, "coder": {"encoder", "decoder"},
           "state": set(), "act": set()}


@pytest.mark.parametrize("component", list(CHANGES))
def test_each_component_changes_only_its_tensors(component):
    torch.manual_seed(0)
    model = S4DClassifier(2, 3, d_model=6, d_state=8, n_layers=2).eval()
    x = torch.randn(4, 25, 2)
    before, logits = effective(model), model(x)
    quantize(model, {**ALL_FLOAT, component: 2})
    after = effective(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == CHANGES[component]
    assert not torch.allclose(model(x), logits)


def on_grid(values: torch.Tensor, reference: torch.Tensor, bits: int) -> bool:
    """values ∈ step·{−L..L} with step from reference's abs-max (complex: over re and im together)."""
    values = torch.view_as_real(values) if values.is_complex() else values
    reference = torch.view_as_real(reference) if reference.is_complex() else reference
    step = reference.abs().max() / 2 ** (bits - 1)
    return torch.allclose(values / step, torch.round(values / step), atol=1e-4)


def test_deploy_recurrence_uses_exactly_the_quantized_crossbar_tensors():
    torch.manual_seed(3)
    layer = S4D(d_model=4, d_state=8).double()
    float_tensors = layer.discrete()
    for name, width in (("A_bar", 3), ("B_bar", 3), ("C", 4), ("D", 4), ("state", 5)):
        layer.taps.attach(name, Quantizer(width).double())
    A_bar, B_bar, C, D = layer.discrete()
    for value, reference, width in zip((A_bar, B_bar, C, D), float_tensors, (3, 3, 4, 4)):
        assert on_grid(value.detach(), reference.detach(), width)
        assert not torch.equal(value, reference)
    u = torch.randn(2, 4, 30, dtype=torch.float64)
    state, outputs = torch.zeros(2, 4, 4, dtype=torch.complex128), []
    for t in range(30):
        state = Quantizer(5).double()(A_bar * state + B_bar * u[..., t, None])
        assert len(torch.unique(torch.view_as_real(state))) <= 2 ** 5 + 1
        outputs.append(2 * (C * state).sum(-1).real + D * u[..., t])
    assert torch.allclose(layer(u, "recurrent"), torch.stack(outputs, -1), atol=1e-12)


def test_deploy_target_leaves_continuous_parameters_alone():
    model = S4DClassifier(1, 2, d_model=4, d_state=4, n_layers=1)
    quantize(model, {"A": 2, "C": 2, "log_dt": 2}, target="deploy")
    taps = model.blocks[0].ssm.taps
    assert set(taps) == {"A_bar", "B_bar", "C", "D"}
    assert taps["A_bar"].quantizer.unit_disc and not taps["B_bar"].quantizer.unit_disc  # Ā stays stable


def test_quantized_model_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = quantize(S4DClassifier(1, 3, d_model=4, d_state=4, n_layers=1), {"all": 3}, scale="learned")
    x = torch.randn(5, 12, 1)
    model.train()
    model(x)  # learned clips initialise, signal ranges are observed
    model.eval()
    torch.save(model.state_dict(), tmp_path / "q.pt")
    clone = quantize(S4DClassifier(1, 3, d_model=4, d_state=4, n_layers=1), {"all": 3}, scale="learned")
    clone.load_state_dict(torch.load(tmp_path / "q.pt"))
    assert torch.equal(clone.eval()(x), model(x))


@pytest.mark.parametrize("bits", range(2, 9))
def test_unit_disc_quantizer_keeps_stable_values_stable_on_the_grid(bits):
    torch.manual_seed(bits)
    radius, angle = 0.9 + 0.1 * torch.rand(4000, dtype=torch.float64), 6.3 * torch.rand(4000, dtype=torch.float64)
    z = torch.polar(radius, angle)
    q = Quantizer(bits, unit_disc=True)(z)
    plain = Quantizer(bits)(z)
    step = torch.view_as_real(z).abs().max() / 2 ** (bits - 1)
    units = torch.view_as_real(q) / step
    assert torch.allclose(units, units.round(), atol=1e-9)  # on the square grid
    assert (q.abs() <= 1 + 1e-12).all()
    assert ((torch.view_as_real(q) - torch.view_as_real(z)).abs() < step * (1 + 1e-9)).all()  # within a step
    kept = plain.abs() <= 1
    assert torch.equal(q[kept], plain[kept]) and (~kept).any()  # plain rounding leaves the disc somewhere


@pytest.mark.parametrize("bits", range(2, 9))
def test_deploy_quantization_keeps_conv_equal_to_recurrent_over_784_steps(bits):
    torch.manual_seed(bits)
    layer = S4D(4, d_state=32, dt_min=1e-3, dt_max=1e-2).double()  # slow modes: |Ā| within 1e-2 of 1
    for name in ("A_bar", "B_bar", "C", "D"):
        layer.taps.attach(name, Quantizer(bits, unit_disc=name == "A_bar"))
    u = torch.randn(2, 4, 784, dtype=torch.float64)
    conv, recurrent = layer(u, "conv"), layer(u, "recurrent")
    assert torch.isfinite(recurrent).all()
    assert torch.allclose(conv, recurrent, rtol=1e-7, atol=1e-7 * recurrent.abs().max().item())


def authors_quantizer(a: torch.Tensor, levels: int) -> torch.Tensor:
    """The authors' max_quant_fn (qS4, state-spaces quantSSM): round(a·s) clamped to ±levels/2, s = levels/2/max|a|."""
    scale = levels / 2 / a.abs().max().clamp(min=1e-5)
    return torch.clamp((a * scale).round(), -levels // 2, levels // 2) / scale


def test_qs4d_scheme_places_the_quantizers_as_the_authors_code():
    torch.manual_seed(0)
    model = S4DClassifier(1, 3, d_model=4, d_state=8, n_layers=2).double().train()
    reference = copy.deepcopy(model.blocks[0].ssm)
    quantize(model, {**ALL_FLOAT, "state": 5, "C": 4}, scheme="qs4d")
    ssm = model.blocks[0].ssm
    assert set(ssm.taps) == {"C_pair", "kernel", "u"} and not model.taps and set(model.blocks[0].taps) == set()
    # C: (re, im) pairs under one scale, 4 bits = their 16 levels
    assert torch.allclose(torch.view_as_real(ssm.output_matrix()), authors_quantizer(reference.C, 16), atol=1e-6)
    # state: kernel K and u at 5 − 1 bits (their state_quant / 2 = 16 levels), then their FFT convolution and D·u
    u = torch.randn(2, 4, 30, dtype=torch.float64)
    with torch.no_grad():
        C_float = reference.C.clone()
        reference.C.copy_(authors_quantizer(C_float, 16))
        k, uq = authors_quantizer(reference.kernel(30), 16), authors_quantizer(u, 16)
        y = torch.fft.irfft(torch.fft.rfft(uq, n=60) * torch.fft.rfft(k, n=60), n=60)[..., :30]
        y = y + uq * reference.D[:, None]
        assert torch.allclose(ssm(u, "conv"), y, atol=1e-6)  # torch's fake quantization steps in float32


def test_qs4d_scheme_quantizes_activations_after_the_mixing_nonlinearity_only():
    torch.manual_seed(0)
    model = quantize(S4DClassifier(1, 3, d_model=4, d_state=8, n_layers=2), {**ALL_FLOAT, "act": 3}, scheme="qs4d")
    assert all(set(block.taps) == {"act_mix"} for block in model.blocks) and not model.taps
    seen = []
    model.blocks[0].taps["act_mix"].register_forward_hook(lambda m, i, out: seen.append(out))
    model.train()(torch.randn(5, 12, 1))
    assert len(torch.unique(seen[0])) <= 2 ** 3 + 1  # on the 3-bit grid
    with pytest.raises(ValueError, match="scheme = 'qs4d' with target 'deploy'"):
        quantize(S4DClassifier(1, 3, d_model=4, d_state=8, n_layers=1), {"all": 4}, target="deploy", scheme="qs4d")
