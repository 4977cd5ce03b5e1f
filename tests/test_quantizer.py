import pytest
import torch

from pipeline.quant import Quantizer


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_grid_has_2b_plus_1_symmetric_levels(bits):
    x = torch.linspace(-1, 1, 10001)
    q = Quantizer(bits)(x)
    levels = torch.unique(q)
    assert len(levels) == 2 ** bits + 1
    assert torch.allclose(levels, -levels.flip(0))
    step = 1 / 2 ** (bits - 1)
    assert torch.allclose(levels / step, torch.round(levels / step), atol=1e-5)


def test_one_bit_is_ternary():
    x = torch.tensor([-0.9, -0.4, 0.0, 0.2, 0.6, 0.9])
    assert torch.equal(Quantizer(1)(x), torch.tensor([-0.9, 0.0, 0.0, 0.0, 0.9, 0.9]))


@pytest.mark.parametrize("scale,clip", [("absmax", None), ("fixed", 0.5)])
def test_idempotent(scale, clip):
    quantizer = Quantizer(3, scale, clip)
    x = torch.randn(1000)
    once = quantizer(x)
    assert torch.equal(quantizer(once), once)


def test_fixed_clip_saturates_and_ste_gradient_is_identity_inside():
    x = torch.tensor([-2.0, -0.3, 0.1, 0.45, 3.0], requires_grad=True)
    q = Quantizer(2, "fixed", 0.5)(x)
    assert torch.allclose(q, torch.tensor([-0.5, -0.25, 0.0, 0.5, 0.5]))
    q.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_learned_clip_gets_a_gradient_and_starts_at_absmax():
    quantizer = Quantizer(2, "learned")
    x = torch.randn(256)
    loss = (quantizer(x) - 0.3 * x).pow(2).sum()
    assert quantizer.clip.item() == pytest.approx(x.abs().max().item())
    loss.backward()
    assert quantizer.clip.grad is not None and quantizer.clip.grad.abs().item() > 0


def test_complex_tensors_share_one_scale():
    z = torch.complex(torch.tensor([1.0, 0.1]), torch.tensor([-0.5, 0.26]))
    q = Quantizer(2)(z)  # grid step 0.5 from the abs-max 1.0 over real and imaginary parts
    assert torch.equal(q, torch.complex(torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 0.5])))


def test_signal_quantizer_fixes_its_range_at_evaluation():
    quantizer = Quantizer(4, observe=True)
    for _ in range(50):
        quantizer(torch.randn(64) * 2)
    quantizer.eval()
    alone, in_batch = quantizer(torch.tensor([0.3]))[0], quantizer(torch.tensor([0.3, 50.0]))[0]
    assert alone == in_batch  # a sample's result does not depend on the rest of its batch
    assert 4 < quantizer.running_clip.item() < 12


@pytest.mark.parametrize("kwargs,message", [
    ({"bits": 0}, "1..16"), ({"bits": 17}, "1..16"), ({"bits": 4, "scale": "fixed", "clip": 0.0}, "> 0"),
    ({"bits": 4, "scale": "minmax"}, "absmax"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Quantizer(**kwargs)


@pytest.mark.parametrize("bits", [1, 2, 4, 7])
def test_fused_quantizer_matches_the_explicit_grid_ste_and_lsq_gradients(bits):
    """Against q = s·round(clamp(x/s, ±L)) with a clamp STE and LSQ's step gradient, written out (float64)."""
    torch.manual_seed(bits)
    quantizer = Quantizer(bits, "learned").double()
    x = torch.randn(2000, dtype=torch.float64, requires_grad=True)
    quantizer(x)  # initialises the clip at the abs-max
    with torch.no_grad():
        quantizer.clip.mul_(0.7)  # some entries now lie outside the clip
    weights = torch.randn(2000, dtype=torch.float64)
    (quantizer(x) * weights).sum().backward()

    levels = 2 ** (bits - 1)
    clip = quantizer.clip.detach().clone().requires_grad_()
    scaled = clip * (2000 * levels) ** -0.5 + (clip - clip * (2000 * levels) ** -0.5).detach()  # LSQ grad scale
    step = scaled / levels
    v = torch.clamp(x / step, -levels, levels)
    reference = step * (v + (torch.round(v) - v).detach())
    x_grad = x.grad.clone()
    x.grad = None
    (reference * weights).sum().backward()
    assert torch.allclose(quantizer(x), reference, atol=1e-6 * clip.item())  # fake quantization rounds in float32
    assert torch.allclose(x_grad, x.grad)
    assert quantizer.clip.grad.item() == pytest.approx(clip.grad.item(), rel=1e-4)


def test_abs_max_quantizer_passes_the_gradient_through():
    x = torch.randn(500, requires_grad=True)
    (Quantizer(3)(x) * torch.arange(500.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(500.0))


@pytest.mark.parametrize("bits", [1, 4, 7, 12])
def test_fake_quantization_rounds_as_torchs_per_tensor_kernel(bits):
    """The elementwise forward gives torch.fake_quantize_per_tensor_affine's floats bit for bit (zeros' signs too)."""
    torch.manual_seed(bits)
    levels = 2 ** (bits - 1)
    x = torch.randn(20000) * 3
    x[:50] = -1e-12  # rounds to −0 before the + 0
    step = x.abs().max() / levels
    reference = torch.fake_quantize_per_tensor_affine(x, step, torch.zeros((), dtype=torch.int32), -levels, levels)
    q = Quantizer(bits)(x)
    assert torch.equal(q, reference) and torch.equal(q.signbit(), reference.signbit())
