"""Switch params.yaml to a benchmark preset: `python -m pipeline.presets <name>` (no name: list them).

A params.yaml that matches no preset is kept as params.yaml.bak before it is replaced.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pipeline.config import ConfigError, load


def available(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def switch(name: str, root: Path = Path(".")) -> Path:
    presets = available(root / "presets")
    if name not in presets:
        raise ConfigError(f"preset = {name!r}: allowed {sorted(presets)}")
    load(presets[name])  # refuse a broken preset before touching params.yaml
    target = root / "params.yaml"
    if target.exists() and all(target.read_bytes() != p.read_bytes() for p in presets.values()):
        shutil.copyfile(target, root / "params.yaml.bak")
        print(f"kept your previous params as {root / 'params.yaml.bak'}")
    shutil.copyfile(presets[name], target)
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print("presets:", " ".join(available(Path("presets"))))
        return 0
    try:
        print(f"params.yaml ← presets/{argv[0]}.yaml" if switch(argv[0]) else "")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
