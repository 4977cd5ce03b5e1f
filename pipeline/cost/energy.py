"""Energy per inference (pJ) of the S4D classifier on an analog crossbar chip, and of the same model on digital
logic in fp32 and int8, from per-operation energies.

Per-operation energies and their sources:
- Digital arithmetic and SRAM, 45 nm, 0.9 V (Horowitz, "Computing's energy problem", ISSCC 2014): 8-bit integer
  multiply 0.2 pJ, 32-bit integer add 0.1 pJ, fp32 multiply 3.7 pJ, fp32 add 0.9 pJ, a 64-bit read from an 8 kB
  SRAM 10 pJ. A b×c-bit integer multiply is scaled as 0.2·(b·c/64) pJ (an array multiplier's area grows with
  b·c; this gives 3.2 pJ at 32 bits, Horowitz: 3.1); every integer product is accumulated at 32 bits.
- ADC: 3.1 mW at 1.2 GS/s for 8 bits (Kull et al., ISSCC 2013, the SAR ADC ISAAC builds on; Shafiee et al.,
  ISCA 2016) = 2.58 pJ per conversion, scaled by 2^(b−8) for b bits (a constant Walden figure of merit, energy per
  conversion step).
- Inputs, two encodings (`ENCODINGS`):
  - `multibit`: one read per step, each row driven by a b-bit DAC. 8 bits: 0.32 mW at 1.1 GS/s = 0.291 pJ per
    conversion (the capacitive DAC of Chen et al., "A >3GHz ERBW 1.1GS/s 8b two-step SAR ADC with recursive-weight
    DAC", VLSI Symposium 2018; the figure BRAHMS, Song et al., DAC 2021, and Accelergy's component library take for
    an 8-bit DAC), scaled by 2^(b−8) (a binary-weighted capacitor array's switched capacitance doubles per bit).
    This is the arithmetic the simulator performs.
  - `bit_serial`: b reads per step, one input bit per read through ISAAC's 1-bit DACs (1,024 per in-situ
    multiply-accumulate unit, 4 mW, 100 ns crossbar read cycle: 0.39 pJ per 1-bit conversion); every read is
    converted by every column's ADC, and the b partial results are shifted and added digitally (b − 1 additions
    per column and step).
- Crossbar cells: V²·G·t per cell and read, V the full-scale read voltage and t the read pulse (params), so an
  upper bound (inputs at full scale).
Digital parts of the analog chip (encoder, norms, mixing, GLU, pooling, decoder, partial sums of split tiles)
run at their trained precision; weights come from SRAM for every use, activations are written and read once.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.cost.proxies import FLOAT_BITS

INT8_MULT_PJ, INT32_ADD_PJ = 0.2, 0.1
FP32_MULT_PJ, FP32_ADD_PJ = 3.7, 0.9
SRAM_PJ_PER_BIT = 10.0 / 64
ADC_8BIT_PJ = 3.1e-3 / 1.2e9 * 1e12
DAC_1BIT_PJ = 4e-3 * 100e-9 / 1024 * 1e12
DAC_8BIT_PJ = 0.32e-3 / 1.1e9 * 1e12
ENCODINGS = ("multibit", "bit_serial")


def mac_pj(a_bits: int, b_bits: int) -> float:
    """One multiply-accumulate; fp32 if either operand is float (32 bits)."""
    if FLOAT_BITS in (a_bits, b_bits):
        return FP32_MULT_PJ + FP32_ADD_PJ
    return INT8_MULT_PJ * a_bits * b_bits / 64 + INT32_ADD_PJ


def add_pj(bits: int) -> float:
    return FP32_ADD_PJ if bits == FLOAT_BITS else INT32_ADD_PJ


def adc_pj(bits: int) -> float:
    return ADC_8BIT_PJ * 2.0 ** (bits - 8)


def dac_pj(bits: int) -> float:
    """One multi-bit conversion."""
    return DAC_8BIT_PJ * 2.0 ** (bits - 8)


@dataclass(frozen=True)
class Tiles:
    """What the crossbar does per read, summed over one layer's tiles: DAC conversions (rows used), ADC
    conversions (logical columns used), Σ(G+ + G−) of the cells (siemens), and the tiles' count."""

    rows: int
    cols: int
    conductance: float
    tiles: int


@dataclass(frozen=True)
class Shape:
    """The model: d_in, classes, H, layers, mixing outputs per channel (2 for GLU, 1 for ReLU), steps L, and
    the live modes per layer."""

    d_in: int
    classes: int
    channels: int
    layers: int
    mix_out: int
    steps: int
    live_modes: tuple[int, ...]


def _digital_common(shape: Shape, r: dict[str, int], split_adds: int = 0) -> dict[str, float]:
    """Per inference: the parts that are digital on every chip (pJ), at widths r (component → bits)."""
    H, L = shape.channels, shape.steps
    mixing = shape.layers * H * H * shape.mix_out
    per_step = {
        "encoder": H * shape.d_in * (mac_pj(r["act"], r["coder"]) + SRAM_PJ_PER_BIT * r["coder"]),
        "norm": shape.layers * H * mac_pj(r["act"], r["act"]),
        "mixing": mixing * (mac_pj(r["act"], r["mix"]) + SRAM_PJ_PER_BIT * r["mix"])
                  + (shape.layers * H * mac_pj(r["act"], r["act"]) if shape.mix_out == 2 else 0),
        "activations": shape.layers * 2 * H * SRAM_PJ_PER_BIT * r["act"],
        "pooling": H * add_pj(r["act"]),
        "partial_sums": split_adds * add_pj(r["act"]),
    }
    energy = {k: v * L for k, v in per_step.items()}
    energy["decoder"] = H * shape.classes * (mac_pj(r["act"], r["coder"]) + SRAM_PJ_PER_BIT * r["coder"])
    return energy


def analog(shape: Shape, tiles: list[Tiles], r: dict[str, int], dac_bits: int, adc_bits: int,
           read_voltage: float, read_time: float, residual: bool = False, encoding: str = "multibit"
           ) -> dict[str, float]:
    """Breakdown (pJ per inference) on the analog chip: L + 1 steps of every tile (one flushes the output), each
    one read (`multibit`) or `dac_bits` reads (`bit_serial`, with their shift-and-add); with the residual mapping
    also the state added back digitally, 2 additions per live mode and step."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding = {encoding!r}: allowed {ENCODINGS}")
    steps, serial = shape.steps + 1, encoding == "bit_serial"
    reads = steps * (dac_bits if serial else 1)
    rows, cols = sum(t.rows for t in tiles), sum(t.cols for t in tiles)
    split_adds = sum(t.tiles for t in tiles) - shape.channels * shape.layers
    energy = _digital_common(shape, r, split_adds)
    energy["dac"] = reads * rows * (DAC_1BIT_PJ if serial else dac_pj(dac_bits))
    energy["adc"] = reads * cols * adc_pj(adc_bits)
    energy["cells"] = reads * sum(t.conductance for t in tiles) * read_voltage ** 2 * read_time * 1e12
    if serial:
        energy["shift_adds"] = steps * (dac_bits - 1) * cols * INT32_ADD_PJ
    if residual:
        energy["state_adds"] = shape.steps * 2 * sum(shape.live_modes) * INT32_ADD_PJ
    return energy


def digital(shape: Shape, bits: int | None) -> dict[str, float]:
    """Breakdown (pJ per inference) of the whole model on digital logic, every operand at `bits` (None = fp32).
    The recurrence costs per live mode and step: Ā·x (4 multiply-adds), B̄·u (2), 2·Re(C·x) (2), with its six
    weights read and its two state values written and read; plus D·u per channel."""
    b = FLOAT_BITS if bits is None else bits
    r = dict.fromkeys(("act", "coder", "mix", "A", "C", "state"), b)
    energy = _digital_common(shape, r)
    modes = sum(shape.live_modes)
    per_step = modes * (8 * mac_pj(b, b) + (6 + 4) * SRAM_PJ_PER_BIT * b)
    per_step += shape.layers * shape.channels * (mac_pj(b, b) + SRAM_PJ_PER_BIT * b)
    energy["recurrence"] = per_step * shape.steps
    return energy
