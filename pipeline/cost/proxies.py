"""QS4D's hardware-cost proxies (Siegel et al., arXiv 2507.06079), with r_x the bit width of x (float = 32):

    ACE  = Σ_layers [H·N·r_state·(r_A + r_C) + H²·r_act·r_mix] + H·d_in·r_coder·r_act + H·d_out·r_coder·r_act
    size = Σ_layers [N·H·(r_A + r_C) + H²·r_mix] + (H·d_in + H·d_out)·r_coder                      (bits)
    ADC  = Σ_layers [(N·r_state + r_act)·H + H·r_mix] + H·r_act + d_out·r_act

ACE counts bit-weighted multiply-accumulates per time step; ADC sums the bits of the analog outputs read per
time step. `size_bits_qs4d` is the size as the authors' code counts it, the decoder as H·d_in weights instead of
H·d_out: 2,362,368 bits at 4 layers, H = N = 128, d_in 1, d_out 10, all 12 bits (ours: 2,376,192). After pruning,
counts of live entries replace the dense ones layer by layer: H·N·r_A → a·r_A with a the live state entries,
H·N·r_C → c·r_C with c the live entries of C, H² → the live mixing weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import resolve_bits

FLOAT_BITS = 32  # the width a float component counts with, in the proxies and the energy model


def widths(bits: dict[str, int | None]) -> dict[str, int]:
    """Bit width of every component; `all` is the default, None or absent means float (32)."""
    return {c: FLOAT_BITS if w is None else w for c, w in resolve_bits(bits).items()}


@dataclass(frozen=True)
class LayerCounts:
    """Live entries of one layer: state (a, H·N when dense), C (c, H·N when dense), mixing (H² when dense)."""

    state: int
    c: int
    mix: int
    channels: int


def dense_layers(n_layers: int, d_model: int, d_state: int) -> list[LayerCounts]:
    return [LayerCounts(d_model * d_state, d_model * d_state, d_model * d_model, d_model)] * n_layers


def proxies(layers: Sequence[LayerCounts], d_in: int, d_out: int, bits: dict[str, int | None]) -> dict:
    """{"ace", "size_bits", "size_bits_qs4d", "adc"} for the given layers and per-component bits."""
    r = widths(bits)
    H = layers[0].channels if layers else 0
    ace = sum(r["state"] * (l.state * r["A"] + l.c * r["C"]) + l.mix * r["act"] * r["mix"] for l in layers)
    ace += H * d_in * r["coder"] * r["act"] + H * d_out * r["coder"] * r["act"]
    size = sum(l.state * r["A"] + l.c * r["C"] + l.mix * r["mix"] for l in layers) + H * (d_in + d_out) * r["coder"]
    adc = sum(l.state * r["state"] + l.channels * r["act"] + l.channels * r["mix"] for l in layers)
    adc += H * r["act"] + d_out * r["act"]
    qs4d = size + H * (d_in - d_out) * r["coder"]
    return {"ace": ace, "size_bits": size, "size_bits_qs4d": qs4d, "adc": adc}


def model_proxies(n_layers: int, d_model: int, d_state: int, d_in: int, d_out: int,
                  bits: dict[str, int | None]) -> dict:
    return proxies(dense_layers(n_layers, d_model, d_state), d_in, d_out, bits)
