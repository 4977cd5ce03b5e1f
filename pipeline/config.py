"""Typed, validated parameters: `params.yaml` → one `Config` object shared by every stage.

Every section refuses unknown keys and invalid values before any compute, with a message that names the
key, the value and what is allowed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from pipeline.analog.devices import PRESETS, DeviceConfig
from pipeline.section import ConfigError, Section


# ---------------------------------------------------------------- data sets (one model per source)
class Mnist1dData(Section):
    """MNIST-1D generated locally by `mnist1d.data.make_dataset` (Greydanus 2020): 40 steps, 1 channel."""

    name: Literal["mnist1d"]
    num_samples: int = Field(5000, ge=100, description="total samples before the 80/20 train/test split")
    generator_seed: int = Field(42, description="mnist1d's own seed; 42 gives the reference data set")
    val_fraction: float = Field(0.1, gt=0, lt=1)


class MnistData(Section):
    """Sequential MNIST (784 steps, 1 channel), optionally with a fixed pixel permutation (psMNIST)."""

    name: Literal["smnist", "psmnist"]
    source: str = Field("../shared/data/mnist", description="folder of the four IDX files, or a hub id")
    verify_checksum: bool = True
    val_size: int = Field(5000, ge=1, le=59000)
    permutation_seed: int = 0


class CifarData(Section):
    """Sequential CIFAR-10 in grayscale (1024 steps, 1 channel), QS4D's normalisation."""

    name: Literal["scifar"]
    source: str = Field("uoft-cs/cifar10", description="folder of the CIFAR-10 python batches, or a hub id")
    val_size: int = Field(5000, ge=1, le=49000)


class PathfinderData(Section):
    """Pathfinder generated locally (pipeline/data/pathfinder.py): 32×32 images, 1024 steps, 1 channel."""

    name: Literal["pathfinder"]
    count: int = Field(20000, ge=100, description="images generated, before the test/validation split")
    segments: int = Field(9, ge=2, le=20, description="dashed segments per contour (LRA: 9 baseline, 14 hard)")
    distractors: int = Field(2, ge=0, le=10, description="contours without dots")
    generator_seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)


class FsddData(Section):
    """Free Spoken Digit Dataset: raw 8 kHz audio, max-abs normalised, subsampled, padded."""

    name: Literal["fsdd"]
    source: str = "../shared/data/fsdd/recordings"
    subsample: int = Field(4, ge=1, le=64)
    length: int = Field(2048, ge=16, description="steps after subsampling; longer clips are truncated")
    digits: list[Annotated[int, Field(ge=0, le=9)]] | None = Field(
        None, min_length=2, description="keep only these digits (relabelled 0..k-1); null = all ten"
    )
    val_fraction: float = Field(0.1, gt=0, lt=1)


class DigitsData(Section):
    """scikit-learn's 8×8 digits as 64-step sequences: a fast data set for tests."""

    name: Literal["digits"]
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)


DataConfig = Annotated[Mnist1dData | MnistData | CifarData | PathfinderData | FsddData | DigitsData,
                      Field(discriminator="name")]


# ---------------------------------------------------------------- model and training
class ModelConfig(Section):
    """S4D classifier (DESIGN.md §2)."""

    d_model: int = Field(64, ge=1, description="H, channels")
    d_state: int = Field(64, ge=2, description="N, real state size (N/2 complex modes per channel)")
    n_layers: int = Field(2, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    mixing: Literal["glu", "relu"] = "glu"
    residual: bool = False
    prenorm: bool = True
    a_init: Literal["lin", "qs4d"] = Field("lin", description="Im(A) = π·n (S4D-Lin) or (π/4)·n (QS4D)")
    dt_min: float = Field(1e-3, gt=0)
    dt_max: float = Field(1e-1, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.d_state % 2:
            raise ValueError(f"d_state = {self.d_state}: must be even (complex modes come in conjugate pairs)")
        if self.dt_min >= self.dt_max:
            raise ValueError(f"dt_min = {self.dt_min} must be < dt_max = {self.dt_max}")
        return self


class TrainConfig(Section):
    """How any training stage runs (hardware, batching); shared by all stages. `batch_size` is the global batch;
    with `strategy: ddp_spawn` each of `devices` processes takes an equal share and gradients are averaged."""

    batch_size: int = Field(64, ge=1)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(1, ge=1, description="processes (GPUs, or CPU processes with gloo)")
    strategy: Literal["auto", "ddp_spawn"] = Field(
        "auto", description="auto: one process; ddp_spawn: Lightning's DDP, one spawned process per device")
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed"] = "32-true"
    num_workers: int = Field(0, ge=0)
    deterministic: bool = True
    cuda_graphs: bool = Field(True, description="replay the training forward and backward as CUDA graphs (one "
                              "GPU, 32- or 64-bit precision; ignored elsewhere)")
    compile: bool = Field(True, description="compile the captured training pass with torch.compile before capture "
                          "(with cuda_graphs; ignored where no graphs are captured)")
    matmul_precision: Literal["highest", "high"] = Field(
        "highest", description="float32 matrix products in the stage's process (torch.set_float32_matmul_precision): "
        "highest = IEEE float32; high = TF32 where the hardware has it (GPU tensor cores: inputs rounded to a 10-bit "
        "mantissa, float32 sums; cuDNN's convolutions use TF32 by default anyway)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.devices > 1 and self.strategy != "ddp_spawn":
            raise ValueError(f"devices = {self.devices} needs strategy: ddp_spawn (strategy = {self.strategy!r} runs "
                             "one process)")
        if self.batch_size % self.devices:
            raise ValueError(f"batch_size = {self.batch_size} must be divisible by devices = {self.devices}")
        return self


class Schedule(Section):
    """A training run: AdamW, linear warm-up then cosine decay; SSM parameters (log Δ, A) in their own group."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-2, gt=0)
    ssm_lr: float = Field(1e-3, gt=0, le=1e-3, description="lr of log Δ and A (DESIGN.md: ≤ 1e-3)")
    weight_decay: float = Field(0.01, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    grad_clip: float | None = Field(None, gt=0)


class PretrainConfig(Schedule):
    """Float pretraining."""


COMPONENTS = ("A", "C", "log_dt", "state", "act", "mix", "coder")


def check_bits(bits: dict) -> dict:
    """Component → bits (1..16) or None (float); `all` is the default for components not named."""
    allowed = ("all", *COMPONENTS)
    unknown = sorted(set(bits) - set(allowed))
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; allowed: {list(allowed)}")
    for key, value in bits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16):
            raise ValueError(f"bits.{key} = {value!r}: allowed an integer 1..16, or null for float")
    return bits



def parse_bits(items: list[str]) -> dict:
    """Bits from command-line items `component=bits` (`float` for none), validated like params."""
    bits = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bits {item!r}: expected component=bits, e.g. all=8 or A=float")
        bits[key] = None if value in ("float", "null", "none") else int(value) if value.isdigit() else value
    return check_bits(bits)

def resolve_bits(bits: dict) -> dict[str, int | None]:
    """Bits of every component (None = float) after applying the `all` default; validated."""
    check_bits(bits)
    return {c: bits.get(c, bits.get("all")) for c in COMPONENTS}


class QuantConfig(Section):
    """Per-component fake quantization (DESIGN.md §2 "Quantizer")."""

    target: Literal["paper", "deploy"] = Field(
        "paper", description="paper: A, log Δ, C as QS4D; deploy: Ā, B̄, C, D and the state as on a crossbar")
    bits: dict[str, int | None] = Field(default_factory=lambda: {"all": 8})
    scale: Literal["absmax", "fixed", "learned"] = "absmax"
    clip: float | None = Field(None, description="the clip of scale: fixed")

    @model_validator(mode="after")
    def _check(self) -> QuantConfig:
        check_bits(self.bits)
        if self.scale == "fixed" and not (self.clip is not None and self.clip > 0):
            raise ValueError(f"clip = {self.clip!r}: scale 'fixed' needs a clip > 0")
        return self



class QatConfig(Schedule, QuantConfig):
    """QAT stage: the quantization, the fine-tuning schedule, and the mode training runs in."""

    target: Literal["paper", "deploy", "chip"] = Field(
        "paper", description="paper: A, log Δ, C as QS4D; deploy: Ā, B̄, C, D and the state as on a crossbar; "
        "chip: deploy, trained and validated on the crossbar tiles of `evaluate` (hardware in the loop)")
    chip_device: str = Field("ideal", description="target chip: the device drawn while training (a preset or "
                             "one of evaluate.custom_devices)")
    chip_times: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [1.0], min_length=1, description="s after programming of the chips drawn while "
        "training: one per training pass, uniformly from the list (e.g. [1, 86400, 31536000] against drift)")
    chip_validation: Literal["ideal", "drawn"] = Field(
        "ideal", description="chip QAT and fine-tuning: the chips that validation (checkpoint choice) runs on; "
        "ideal: the model's software accuracy; drawn: one draw of chip_device per validation batch, fixed seeds")
    epochs: int = Field(10, ge=1)
    lr: float = Field(5e-3, gt=0)
    train_mode: Literal["conv", "recurrent"] = Field(
        "conv", description="conv is fast; in deploy, recurrent quantizes the state exactly as evaluated; "
        "ignored by target chip, which trains on the tiles")
    scheme: Literal["ours", "qs4d"] = Field(
        "ours", description="where the quantizers sit (pipeline/quant/attach.py); qs4d, target paper only: as the "
        "authors' code, C under one scale, state = kernel K and S4D input u at b − 1 bits, act after the mixing "
        "nonlinearity only")
    init: Literal["float", "scratch"] = Field(
        "float", description="float: QAT from the pretrained float model; scratch: from a fresh initialisation "
        "(seeded), quantizers on from the first step, as the authors' training script")

    @model_validator(mode="after")
    def _check_scheme(self) -> QatConfig:
        if self.scheme == "qs4d":
            if self.target != "paper":
                raise ValueError(f"scheme 'qs4d' needs target: paper (target = {self.target!r})")
            state = resolve_bits(self.bits)["state"]
            if state == 1:
                raise ValueError("bits: state = 1 under scheme 'qs4d', which quantizes the state at b − 1 bits: "
                                 "allowed ≥ 2 or null")
        return self


class PruneConfig(Schedule):
    """Pruning on a held-out split within a tolerance (pipeline/prune/search.py), then a recovery fine-tune with the
    masks fixed."""

    criterion: Literal["loss", "accuracy"] = Field(
        "loss", description="what must hold while pruning: loss, validation cross-entropy ≤ baseline·(1 + "
        "loss_tolerance); accuracy (QS4D), validation accuracy ≥ baseline − tolerance")
    tolerance: float = Field(0.01, ge=0, le=1, description="criterion accuracy: allowed drop of validation "
                             "accuracy (0.01 = 1 pp)")
    loss_tolerance: float = Field(0.05, ge=0, description="criterion loss: allowed relative rise of validation "
                                  "cross-entropy (0.05 = 5%)")
    search: Literal["chunked", "sequential"] = Field(
        "chunked", description="every candidate tried in saliency order, a failing one skipped; sequential: one "
        "per evaluation (QS4D's); chunked: in chunks that double on success and halve on failure down to 1/chunks "
        "of the candidates, a failing chunk of that size skipped")
    chunks: int = Field(128, ge=1, description="search chunked: the smallest chunk is 1/chunks of the candidates")
    select_on: Literal["validation", "test"] = Field(
        "validation", description="the split the criterion is measured on; test is QS4D's choice, for reproducing "
        "it only: the test accuracy reported after pruning is then biased upwards")
    structured: bool = True
    unstructured: bool = True
    mixing: bool = True
    epochs: int = Field(3, ge=1, description="recovery fine-tune with the masks fixed")
    lr: float = Field(1e-3, gt=0)
    warmup_epochs: int = Field(0, ge=0)

    def granularities(self) -> tuple[str, ...]:
        return tuple(g for g in ("structured", "unstructured", "mixing") if getattr(self, g))

    def criterion_tolerance(self) -> float:
        return self.loss_tolerance if self.criterion == "loss" else self.tolerance


class FinetuneConfig(Schedule):
    """Noise-aware fine-tuning, and the noise-robustness curve of the float, QAT and fine-tuned models."""

    target: Literal["noise", "chip"] = Field(
        "noise", description="noise: Gaussian weight noise of σ_rel `sigma` on every crossbar-mapped tensor (QS4D); "
        "chip: on evaluate's tiles under draws of qat.chip_device at qat.chip_times, quantized as deploy at chip_bits")
    chip_bits: dict[str, int | None] | None = Field(
        None, description="target chip: the deploy bits per component (null: qat.bits); e.g. 8-bit Ā for a model "
        "whose QAT quantized A to 1 bit")
    sigma: float = Field(0.02, ge=0, le=1, description="σ_rel of the training noise, relative to max − min")
    noise_protocol: Literal["crossbar", "paper"] = Field(
        "crossbar", description="the tensors target noise perturbs: crossbar, every crossbar-mapped tensor (Ā, B̄, "
        "C, D); paper, QS4D's: the continuous A only, Re and Im each with its own range")
    mixing_noise: bool = False
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_epochs: int = Field(0, ge=0)
    eval_sigmas: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.01, 0.02, 0.03, 0.04, 0.05], min_length=1)
    draws: int = Field(5, ge=1, description="noise draws per σ of the robustness curve")
    eval_protocols: list[Literal["crossbar", "paper"]] = Field(
        default_factory=lambda: ["crossbar", "paper"], min_length=1, description="noise protocols of the robustness "
        "curve, one curve per model and protocol")

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.chip_bits is not None:
            try:
                check_bits(self.chip_bits)
            except ValueError as error:
                raise ValueError(f"chip_bits: {error}") from None
        return self


class EvaluateConfig(Section):
    """Crossbar evaluation: devices, Monte Carlo chips, times after programming, tiles, converters, energy."""

    devices: list[str] = Field(default_factory=lambda: ["rram", "pcm"], min_length=1,
                               description="names from pipeline/analog/devices.py, or keys of custom_devices")
    custom_devices: dict[str, DeviceConfig] = Field(default_factory=dict)
    device_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="device name → fields replacing the preset's")
    chips: int = Field(8, ge=1, description="independently programmed chips (Monte Carlo)")
    times: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [1.0, 3600.0, 86400.0, 31536000.0], min_length=1, description="s after programming")
    tile_rows: int = Field(64, ge=4, description="≥ 4: u_t, u_{t−1} and one mode's two state rows")
    tile_cols: int = Field(64, ge=6, description="≥ 6: one mode's two state columns and y, as G+/G− pairs")
    mapping: Literal["full", "residual"] = Field(
        "residual", description="residual: the tile holds Ā − I and the state is added back digitally; full: Ā")
    row_gains: Literal["none", "inputs", "all"] = Field(
        "none", description="rows driven at their own attenuated voltage so that their cells span the conductance "
        "range: inputs, the rows of u_t (B̄) and u_{t−1} (D); all, every row; none, every row at the DAC's voltage")
    dac_bits: int = Field(8, ge=2, le=16, description="symmetric converters: 2^b − 1 codes {−(2^(b−1) − 1), …}")
    adc_bits: int = Field(8, ge=2, le=16)
    range_margin: float = Field(1.1, gt=0, description="DAC/ADC full scale = margin × max seen on training data")
    test_samples: int | None = Field(None, ge=1, description="evaluate on the first n test samples; null = all")
    batch_size: int = Field(256, ge=1)
    input_encoding: Literal["multibit", "bit_serial"] = Field(
        "multibit", description="energy model of the DACs: multibit, one read per step with b-bit DACs (what the "
        "simulator computes); bit_serial, b reads of 1-bit inputs, each converted by the ADCs")
    read_voltage: float = Field(0.2, gt=0, description="V, full-scale read voltage (energy model)")
    read_time: float = Field(10e-9, gt=0, description="s, read pulse (energy model)")

    @model_validator(mode="after")
    def _check(self) -> EvaluateConfig:
        self.device_settings()
        return self

    def known_devices(self) -> dict[str, DeviceConfig]:
        """The presets and the custom devices, by name."""
        return {**PRESETS, **self.custom_devices}

    def device(self, name: str) -> DeviceConfig:
        """A known device's settings with its overrides applied."""
        try:
            return DeviceConfig.model_validate(
                {**self.known_devices()[name].model_dump(), **self.device_overrides.get(name, {})})
        except ValidationError as error:
            problems = "; ".join(": ".join([*map(str, e["loc"]), e["msg"].removeprefix("Value error, ")])
                                 for e in error.errors())
            raise ValueError(f"device {name!r}: {problems}") from None

    def device_settings(self) -> dict[str, DeviceConfig]:
        """Each evaluated device's settings: a preset or a custom device, with its overrides applied."""
        known = self.known_devices()
        unknown = sorted(set(self.devices) - set(known)) + sorted(set(self.device_overrides) - set(self.devices))
        if unknown:
            raise ValueError(f"unknown device(s) {unknown}; allowed: {sorted(known)} (overrides only for listed ones)")
        return {name: self.device(name) for name in self.devices}


class SweepBitsConfig(Section):
    """Per-component sweep: each component alone (and `all`) at each bit width, PTQ and short QAT."""

    components: list[str] = Field(default_factory=lambda: ["all", *COMPONENTS], min_length=1)
    bits: list[Annotated[int, Field(ge=1, le=16)]] = Field(default_factory=lambda: [4, 2], min_length=1)
    epochs: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SweepBitsConfig:
        check_bits(dict.fromkeys(self.components))
        return self


class MixedPrecisionConfig(Section):
    """Greedy per-component bit descent (pipeline/steps/mixed_precision.py): from `start_bits`, one bit off one
    component per round, keeping the cheapest candidate whose validation accuracy stays ≥ the cutoff."""

    components: list[str] = Field(default_factory=lambda: list(COMPONENTS), min_length=1)
    start_bits: int = Field(8, ge=1, le=16)
    min_bits: int = Field(2, ge=1, le=16)
    cost: Literal["ace", "size_bits", "adc", "energy"] = "ace"
    tolerance: float = Field(0.01, ge=0, le=1, description="cutoff = the start's validation accuracy − tolerance")
    cutoff: float | None = Field(None, ge=0, le=1, description="an absolute cutoff instead of the tolerance")
    epochs: int = Field(1, ge=1, description="QAT epochs of each candidate, from the current model")

    @model_validator(mode="after")
    def _check(self) -> MixedPrecisionConfig:
        check_bits(dict.fromkeys(self.components))
        if "all" in self.components or len(set(self.components)) < len(self.components):
            raise ValueError(f"components = {self.components}: name each component once, without 'all'")
        if self.min_bits > self.start_bits:
            raise ValueError(f"min_bits = {self.min_bits} must be ≤ start_bits = {self.start_bits}")
        return self


class TrackingConfig(Section):
    """MLflow store; `uri: null` means sqlite:///<project root>/mlflow.db."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = Field("qs4d", min_length=1)

    @model_validator(mode="after")
    def _check_uri(self) -> TrackingConfig:
        if self.uri is not None and (self.uri == "" or self.uri.startswith("file:") or "://" not in self.uri):
            raise ValueError(f"uri = {self.uri!r}: the file store is refused by MLflow; use sqlite:///<abs path>")
        if self.uri and self.uri.startswith("sqlite:///") and not Path(self.uri[len("sqlite:///"):]).is_absolute():
            raise ValueError(f"uri = {self.uri!r}: a sqlite URI needs an absolute path (sqlite:////abs/mlflow.db)")
        return self


class Config(Section):
    """All parameters of one pipeline run."""

    seed: int = 0
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    pretrain: PretrainConfig = PretrainConfig()
    qat: QatConfig = QatConfig()
    prune: PruneConfig = PruneConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    sweep_bits: SweepBitsConfig = SweepBitsConfig()
    mixed_precision: MixedPrecisionConfig = MixedPrecisionConfig()
    tracking: TrackingConfig = TrackingConfig()
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _check_chip(self) -> Config:
        allowed = sorted(self.evaluate.known_devices())
        if "chip" in (self.qat.target, self.finetune.target) and self.qat.chip_device not in allowed:
            raise ValueError(f"qat.chip_device = {self.qat.chip_device!r}: allowed {allowed} (presets and "
                             "evaluate.custom_devices)")
        return self

    def chip_device(self) -> DeviceConfig:
        """The device target `chip` trains under: a preset or custom device, with evaluate's overrides for it."""
        return self.evaluate.device(self.qat.chip_device)

    def path(self, value: str | Path) -> Path:
        """A path from the params, taken relative to the params file's folder."""
        return (self._base / value).resolve()

    def fingerprint(self) -> str:
        """Hex digest of the canonical JSON of every parameter."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _format(error: ValidationError, origin: str, raw: dict) -> str:
    lines = [f"{origin}: invalid parameters"]
    data = raw.get("data")
    tag = str(data.get("name")) if isinstance(data, dict) else None
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        if loc[:1] == ["data"] and len(loc) > 1 and loc[1] == tag:
            del loc[1]  # the union tag pydantic puts into the location of a data set's key
        key = ".".join(loc) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"  {key}{shown}: {message}")
    return "\n".join(lines)


def parse(raw: Any, origin: str = "params", base: Path | None = None) -> Config:
    """Validate a params mapping (relative paths in it are taken from `base`); raise `ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format(error, origin, raw)) from None
    config._base = (base or Path.cwd()).resolve()
    return config


def load(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path.resolve()}")
    with open(path) as f:
        raw = yaml.safe_load(f)
    return parse(raw, origin=str(path), base=path.resolve().parent)
