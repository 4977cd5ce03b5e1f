"""Free Spoken Digit Dataset (Jakobovski et al.): 8 kHz mono WAV files named `{digit}_{speaker}_{take}.wav`.

Official split: takes 0–4 are the test set; validation is carved from the rest by seed. Each clip is
max-abs normalised, subsampled by an integer factor, then zero-padded or truncated to a fixed length.
"""
from __future__ import annotations

import hashlib
import re
import wave
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared, as_sequences, split_off

NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
TEST_TAKES = range(5)


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono PCM → float array."""
    try:
        with wave.open(str(path)) as f:
            if f.getsampwidth() != 2 or f.getnchannels() != 1:
                raise DataError(f"{path}: expected 16-bit mono PCM, got {8 * f.getsampwidth()}-bit, "
                                f"{f.getnchannels()} channel(s)")
            frames = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as error:
        raise DataError(f"{path}: not a readable WAV file ({error}); replace it with the recording from the "
                        "Free Spoken Digit Dataset") from None
    if len(frames) < 2:
        raise DataError(f"{path}: holds no audio; replace it with the recording from the Free Spoken Digit Dataset")
    return np.frombuffer(frames[:len(frames) // 2 * 2], "<i2").astype(np.float32)


def clip_to_sequence(audio: np.ndarray, subsample: int, length: int) -> np.ndarray:
    """Max-abs normalise, keep every `subsample`-th sample, pad with zeros or cut to `length`."""
    peak = np.abs(audio).max()
    audio = (audio / peak if peak > 0 else audio)[::subsample][:length]
    return np.pad(audio, (0, length - len(audio)))


def prepare(config: Config) -> Prepared:
    cfg = config.data
    folder = config.path(cfg.source)
    files = sorted(p for p in folder.glob("*.wav") if NAME.match(p.name)) if folder.is_dir() else []
    if not files:
        raise DataError(f"data.source = {cfg.source!r}: no recordings named '{{digit}}_{{speaker}}_{{take}}.wav' "
                        f"in {folder}; put the Free Spoken Digit Dataset's recordings/ folder there")
    keep = list(range(10)) if cfg.digits is None else list(cfg.digits)
    digest, xs, ys, test = hashlib.md5(), [], [], []
    for path in files:
        digit, _, take = NAME.match(path.name).groups()
        data = path.read_bytes()
        digest.update(path.name.encode() + data)
        if int(digit) not in keep:
            continue
        xs.append(clip_to_sequence(read_wav(path), cfg.subsample, cfg.length))
        ys.append(keep.index(int(digit)))
        test.append(int(take) in TEST_TAKES)
    x, y, test = as_sequences(np.stack(xs)), np.asarray(ys, dtype="int64"), np.asarray(test)
    if test.all() or not test.any():
        raise DataError(f"{folder}: need takes 0–4 (test) and 5+ (train); found only one of the two")
    (x_train, y_train), (x_val, y_val) = split_off(
        x[~test], y[~test], max(1, round(cfg.val_fraction * (~test).sum())), config.seed)
    return Prepared(
        x={"train": x_train, "validation": x_val, "test": x[test]},
        y={"train": y_train, "validation": y_val, "test": y[test]},
        classes=[str(d) for d in keep],
        source=str(folder), version=f"Free Spoken Digit Dataset, {len(files)} recordings",
        checksum=digest.hexdigest(),
        extra={"sample_rate_hz": 8000 / cfg.subsample},
    )
