"""Attach quantizers to a classifier's taps, per component, target and scheme (DESIGN.md §2 "Quantizer").

    component  paper target (QS4D)              deploy target (what a crossbar stores)
    A          Re A, Im A (own scales)          Ā (as 2×2 real blocks; inside the unit disc), B̄
    C          Re C, Im C                       C, D
    log_dt     log Δ                            — (folded into Ā and B̄)
    state      conv kernel K; recurrent state   conv kernel K; recurrent state after each step
    act        data input, S4D input and output, decoder input
    mix        pointwise mixing weights
    coder      encoder and decoder weights
Biases, norms and the skip D (paper target) stay in float, as digital operations.

Scheme `qs4d` (paper target only) places them as the authors' code does (qS4 and the quantSSM branch of
state-spaces): C's (re, im) pairs under one scale; `state` = the kernel K and the S4D input u, each at b − 1 bits
(their quantizer at half the levels); `act` = the mixing output after its nonlinearity, and nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pipeline.config import resolve_bits
from pipeline.model import S4DClassifier
from pipeline.quant.quantizer import Quantizer
from pipeline.scoring import evaluating

# component → {owner: tap names}; owners: "ssm" (each S4D), "block" (each layer), "model" (the classifier)
PAPER = {
    "A": {"ssm": ["A_re", "A_im"]},
    "C": {"ssm": ["C_re", "C_im"]},
    "log_dt": {"ssm": ["log_dt"]},
    "state": {"ssm": ["kernel", "state"]},
    "act": {"block": ["act_in", "act_out"], "model": ["input", "pooled"]},
    "mix": {"block": ["mix"]},
    "coder": {"model": ["encoder", "decoder"]},
}
DEPLOY = {**PAPER, "A": {"ssm": ["A_bar", "B_bar"]}, "C": {"ssm": ["C", "D"]}, "log_dt": {}}
QS4D = {**PAPER, "C": {"ssm": ["C_pair"]}, "state": {"ssm": ["kernel", "u"]}, "act": {"block": ["act_mix"]}}
TARGETS = {"paper": PAPER, "deploy": DEPLOY}
SCHEMES = ("ours", "qs4d")
ONE_BIT_FEWER = {"qs4d": {"state"}}  # components a scheme quantizes at b − 1 bits
SIGNALS = {"input", "act_in", "act_out", "pooled", "state", "u", "act_mix"}  # clip observed, fixed at evaluation
STABLE = {"A_bar"}  # quantized inside the unit disc: a stable mode stays stable


@dataclass(frozen=True)
class Quantization:
    """What `quantize` attaches: bits per component (`all` = default, None = float), target, scale (and the clip
    of scale `fixed`), the mode the quantized model trains in (`conv` or `recurrent`) and the scheme."""

    target: str = "paper"
    bits: dict[str, int | None] = field(default_factory=dict)
    scale: str = "absmax"
    clip: float | None = None
    train_mode: str = "conv"
    scheme: str = "ours"

    @classmethod
    def of(cls, value: Quantization | dict | None) -> Quantization | None:
        """`value` as a Quantization; a dict is its stored form (checkpoint hyperparameters)."""
        return cls(**value) if isinstance(value, dict) else value

    def stored(self) -> dict:
        return asdict(self)

    @property
    def eval_mode(self) -> str:
        """The deploy target is evaluated step by step, as the hardware runs it."""
        return "recurrent" if self.target == "deploy" else "conv"

    def attach(self, model: S4DClassifier) -> S4DClassifier:
        return quantize(model, self.bits, self.target, self.scale, self.clip, self.scheme)


def tap_points(model: S4DClassifier, component: str, target: str, scheme: str = "ours"
               ) -> list[tuple[nn.Module, str]]:
    """(Taps, name) pairs where `component` is quantized under `target` and `scheme`."""
    owners = {"model": [model], "block": list(model.blocks), "ssm": [b.ssm for b in model.blocks]}
    names = (QS4D if scheme == "qs4d" else TARGETS[target])[component]
    return [(owner.taps, name) for kind, tap_names in names.items() for owner in owners[kind] for name in tap_names]


def quantize(model: S4DClassifier, bits: dict[str, int | None], target: str = "paper",
             scale: str = "absmax", clip: float | None = None, scheme: str = "ours") -> S4DClassifier:
    """Attach one quantizer per tap point of every component with bits (`all` = default, None = float)."""
    if target not in TARGETS:
        raise ValueError(f"target = {target!r}: allowed {sorted(TARGETS)}")
    if scheme not in SCHEMES or (scheme == "qs4d" and target != "paper"):
        raise ValueError(f"scheme = {scheme!r} with target {target!r}: allowed 'ours', or 'qs4d' with target paper")
    for component, width in resolve_bits(bits).items():
        if width is None:
            continue
        width -= component in ONE_BIT_FEWER.get(scheme, ())
        if width < 1:
            raise ValueError(f"bits.{component} = 1 under scheme {scheme!r}, which quantizes it at b − 1 bits: "
                             "allowed ≥ 2")
        for taps, name in tap_points(model, component, target, scheme):
            taps.attach(name, Quantizer(width, scale, clip, observe=name in SIGNALS, unit_disc=name in STABLE))
    return model


def quantizers(model: nn.Module) -> list[Quantizer]:
    return [m for m in model.modules() if isinstance(m, Quantizer)]


@torch.no_grad()
def calibrate(model: S4DClassifier, batches, mode: str = "conv") -> None:
    """Measure the clip of every signal quantizer that has not observed data yet, on `batches` of inputs,
    with the model in evaluation mode (BatchNorm statistics untouched)."""
    pending = [q for q in quantizers(model) if q.observe and not bool(q.observed)]
    if not pending:
        return
    for q in pending:
        q.calibrating = True
    try:
        with evaluating(model):
            for x in batches:
                model(x, mode)
    finally:
        for q in pending:
            q.calibrating = False
