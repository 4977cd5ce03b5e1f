import functools
import math

import pytest
import torch
from conftest import direct_causal_conv, relative_error

import pipeline.model.fft_conv as fft_conv_module
from pipeline.model import S4D, S4DClassifier
from pipeline.model.fft_conv import fft_conv


@pytest.mark.parametrize("a_init", ["lin", "qs4d"])
def test_layer_conv_equals_recurrent_float64(a_init):
    torch.manual_seed(0)
    layer = S4D(d_model=6, d_state=16, a_init=a_init).double()
    u = torch.randn(3, 6, 120, dtype=torch.float64)
    assert relative_error(layer(u, "conv"), layer(u, "recurrent")) <= 1e-5


@pytest.mark.parametrize("mixing,residual,prenorm", [("glu", False, True), ("relu", True, False)])
def test_classifier_conv_equals_recurrent_float64(mixing, residual, prenorm):
    torch.manual_seed(1)
    model = S4DClassifier(d_in=2, n_classes=5, d_model=8, d_state=8, n_layers=2, mixing=mixing,
                          residual=residual, prenorm=prenorm).double()
    model.train()
    model(torch.randn(16, 30, 2, dtype=torch.float64))  # move the BatchNorm running statistics off init
    model.eval()
    x = torch.randn(4, 50, 2, dtype=torch.float64)
    assert relative_error(model(x, "conv"), model(x, "recurrent")) <= 1e-5


def test_kernel_matches_explicit_sum_and_zoh():
    torch.manual_seed(2)
    layer = S4D(d_model=3, d_state=4).double()
    A = -torch.exp(layer.log_A_re.detach()) + 1j * layer.A_im.detach()
    dt = torch.exp(layer.log_dt.detach()).unsqueeze(-1)
    C = torch.view_as_complex(layer.C.detach())
    A_bar, B_bar = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A
    # ZOH input matrix: B̄ = ∫₀^Δ exp(A s) ds · B with B = 1, by a midpoint rule
    s = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000 * dt.unsqueeze(-1)
    integral = torch.exp(A.unsqueeze(-1) * s).mean(-1) * dt
    assert torch.allclose(integral, B_bar, rtol=1e-6)
    explicit = torch.stack([2 * (C * B_bar * A_bar**l).sum(-1).real for l in range(10)], dim=-1)
    assert torch.allclose(layer.kernel(10).detach(), explicit, atol=1e-12)  # real arithmetic
    stored_A_bar, stored_B_bar, _, _ = layer.discrete()
    assert torch.allclose(stored_A_bar, A_bar, atol=1e-14) and torch.allclose(stored_B_bar, B_bar, atol=1e-14)
    layer.taps.attach("C", torch.nn.Identity())  # a tap on a stored value: the kernel from `discrete`'s values
    assert torch.allclose(layer.kernel(10).detach(), explicit, atol=1e-12)


class Zero(torch.nn.Module):
    def forward(self, x):
        return x * 0


def test_a_mode_whose_A_is_zeroed_integrates_instead_of_dividing_by_zero():
    """Mode 0 of S4D-Lin has Im A = 0; a coarse quantizer that rounds its Re A to 0 leaves A = 0."""
    torch.manual_seed(4)
    layer = S4D(d_model=2, d_state=4).double()
    layer.taps.attach("A_re", Zero())
    A_bar, B_bar, _, _ = layer.discrete()
    dt = torch.exp(layer.log_dt.detach())
    assert torch.equal(A_bar[:, 0], torch.ones(2, dtype=A_bar.dtype))  # Ā = 1 …
    assert torch.allclose(B_bar[:, 0].real, dt)  # … and B̄ = Δ
    assert torch.equal(B_bar[:, 0].imag, torch.zeros(2, dtype=dt.dtype))
    u = torch.randn(3, 2, 40, dtype=torch.float64)
    y = layer(u, "conv")
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert relative_error(y, layer(u, "recurrent")) <= 1e-8


def test_initialisation():
    layer = S4D(d_model=5, d_state=8, a_init="qs4d", dt_min=1e-3, dt_max=1e-1)
    assert torch.allclose(-torch.exp(layer.log_A_re), torch.full((5, 4), -0.5))
    assert torch.allclose(layer.A_im[0], math.pi / 4 * torch.arange(4.0))
    assert torch.allclose(S4D(5, 8, a_init="lin").A_im[2], math.pi * torch.arange(4.0))
    dt = torch.exp(layer.log_dt)
    assert ((dt >= 1e-3) & (dt <= 1e-1)).all()
    assert layer.C.shape == (5, 4, 2) and layer.D.shape == (5,)


def test_bad_mode_and_init_are_refused():
    with pytest.raises(ValueError, match="a_init"):
        S4D(4, 4, a_init="random")
    with pytest.raises(ValueError, match="mode"):
        S4D(4, 4)(torch.randn(1, 4, 5), mode="fft")


@pytest.fixture(params=["real", "paired"])
def transform(request, monkeypatch) -> str:
    """Which FFT convolution even batches take: the real transforms, or pairs as one complex signal (the GPU's)."""
    monkeypatch.setattr(fft_conv_module, "PAIRED_DEVICES", ("cpu",) if request.param == "paired" else ())
    return request.param


@pytest.mark.parametrize("batch", [3, 4])
def test_fft_conv_and_its_backward_match_a_direct_causal_convolution(transform, batch):
    torch.manual_seed(5)
    u = torch.randn(batch, 4, 37, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 37, dtype=torch.float64, requires_grad=True)
    direct = direct_causal_conv(u, k)
    y = fft_conv(u, k)
    paired = transform == "paired" and batch % 2 == 0  # an odd batch always takes the real transforms
    assert ("Paired" in y.grad_fn.name()) == paired
    assert relative_error(y, direct) <= 1e-12
    g = torch.randn_like(direct)
    expected = torch.autograd.grad(direct, (u, k), g)
    for got, want in zip(torch.autograd.grad(y, (u, k), g), expected):
        assert relative_error(got, want) <= 1e-12
    small = (u[:, :2, :9].detach().requires_grad_(), k[:2, :9].detach().requires_grad_())
    assert torch.autograd.gradcheck(fft_conv, small)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the paired form is the GPU's")
def test_a_gpu_convolves_an_even_batch_as_pairs_with_the_real_transforms_result():
    torch.manual_seed(8)
    u = torch.randn(4, 4, 37, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(4, 37, dtype=torch.float64, device="cuda", requires_grad=True)
    g = torch.randn(4, 4, 37, dtype=torch.float64, device="cuda")
    y, y_real = fft_conv(u, k), fft_conv_module._FFTConv.apply(u, k)
    assert "Paired" in y.grad_fn.name()
    for got, want in zip((y, *torch.autograd.grad(y, (u, k), g)), (y_real, *torch.autograd.grad(y_real, (u, k), g))):
        assert relative_error(got, want) <= 1e-12


def test_fft_conv_folds_the_inverse_scaling_into_the_kernel_spectrum_exactly():
    """1/n is applied to K̂ instead of to each inverse transform: for n a power of 2 that is exact in floating point,
    so the float32 output and gradients equal the module docstring's formulas with irfft's own 1/n, bit for bit."""
    torch.manual_seed(6)
    u = torch.randn(5, 8, 100, requires_grad=True)
    k = torch.randn(8, 100, requires_grad=True)
    g = torch.randn(5, 8, 100)
    spectrum = functools.partial(torch.fft.rfft, n=256)
    U, K, G = spectrum(u.detach()), spectrum(k.detach()), spectrum(g)
    expected = [torch.fft.irfft(product, n=256)[..., :100]
                for product in (U * K, G * K.conj(), torch.linalg.vecdot(U, G, dim=0))]
    y = fft_conv(u, k)
    for got, want in zip((y, *torch.autograd.grad(y, (u, k), g)), expected):
        assert torch.equal(got, want)


def test_compiled_fft_conv_writes_its_spectral_products_in_real_arithmetic_with_the_same_result(transform):
    torch.manual_seed(7)
    u = torch.randn(4, 4, 37, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 37, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 4, 37, dtype=torch.float64)
    torch._dynamo.reset()
    compiled = torch.compile(fft_conv, fullgraph=True)  # fullgraph: the real-arithmetic branch traces whole
    y, y_compiled = fft_conv(u, k), compiled(u, k)
    for got, want in zip((y_compiled, *torch.autograd.grad(y_compiled, (u, k), g)),
                         (y, *torch.autograd.grad(y, (u, k), g))):
        assert relative_error(got, want) <= 1e-12


@pytest.mark.parametrize("mixing", ["glu", "relu"])
def test_compiled_block_with_its_mixing_checkpoint_gives_the_eager_output_and_gradients(mixing):
    from pipeline.model.classifier import Block

    torch.manual_seed(3)
    block = Block(8, 4, 0.0, mixing, False, True, "lin", 1e-3, 1e-1).double().train()
    x = torch.randn(3, 8, 21, dtype=torch.float64)
    g = torch.randn(3, 8, 21, dtype=torch.float64)
    params = list(block.parameters())
    y = block(x)
    expected = (y, *torch.autograd.grad(y, params, g))
    torch._dynamo.reset()
    y = torch.compile(block, fullgraph=True)(x)  # compiled: the checkpointed branch of Block.mixing
    for got, want in zip((y, *torch.autograd.grad(y, params, g)), expected):
        assert relative_error(got, want) <= 1e-12


def test_tap_transforms_apply_in_one_order_whatever_the_order_they_were_attached_in():
    from pipeline.analog.noise import Noise
    from pipeline.model.taps import Taps
    from pipeline.prune.masks import Mask
    from pipeline.quant import Quantizer

    orders = [("mask", "noise", "quantizer"), ("noise", "quantizer", "mask"), ("quantizer", "mask", "noise")]
    made = {"quantizer": lambda: Quantizer(4), "noise": lambda: Noise(0.1), "mask": lambda: Mask("entry", (3,))}
    for order in orders:
        taps = Taps()
        for name in order:
            taps.attach("C", made[name]())
        assert list(taps["C"]._modules) == ["quantizer", "noise", "mask"], order
