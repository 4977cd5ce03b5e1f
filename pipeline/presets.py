"""Switch params.yaml to a benchmark preset: `python -m pipeline.presets <name>` (no name: list them).

`<name>+<overlay>` applies an overlay of presets/overlays/ on the preset (e.g. `smnist+qs4d`: the authors'
protocols), key by key as `dvc exp run -S` sets them, so the file keeps its comments and form. A params.yaml that
matches no preset is kept as params.yaml.bak before it is replaced.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.config import ConfigError, load


def available(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def overrides(overlay: Path) -> list[str]:
    """An overlay's keys as `dvc exp run -S` items: section.key=value."""
    def text(value) -> str:
        if isinstance(value, list):
            return "[" + ",".join(text(v) for v in value) + "]"
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    def flat(node: dict, prefix: str = ""):
        for key, value in node.items():
            yield from flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}={text(value)}"]
    return list(flat(yaml.safe_load(overlay.read_text())))


def render(name: str, root: Path) -> str:
    """The params text of preset `name` or `preset+overlay`, validated."""
    presets, overlays = available(root / "presets"), available(root / "presets" / "overlays")
    base, _, overlay = name.partition("+")
    if base not in presets or (overlay and overlay not in overlays):
        allowed = sorted(presets) + [f"<preset>+{o}" for o in overlays]
        raise ConfigError(f"preset = {name!r}: allowed {allowed}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        shutil.copyfile(presets[base], path)
        if overlay:
            from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls
            apply_overrides(path, overrides(overlays[overlay]))
        load(path)  # refuse a broken preset before touching params.yaml
        return path.read_text()


def is_rendered(text: str, root: Path) -> bool:
    """Whether `text` is a preset or a preset with an overlay, as `render` writes it."""
    bases, overlays = available(root / "presets"), available(root / "presets" / "overlays")
    return (any(text == p.read_text() for p in bases.values())
            or any(text == render(f"{b}+{o}", root) for b in bases for o in overlays))


def switch(name: str, root: Path = Path(".")) -> Path:
    text = render(name, root)
    target = root / "params.yaml"
    if target.exists() and not is_rendered(target.read_text(), root):
        shutil.copyfile(target, root / "params.yaml.bak")
        print(f"kept your previous params as {root / 'params.yaml.bak'}")
    target.write_text(text)
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print("presets:", " ".join(available(Path("presets"))))
        print("overlays (<preset>+<overlay>):", " ".join(available(Path("presets") / "overlays")))
        return 0
    try:
        base, _, overlay = argv[0].partition("+")
        switch(argv[0])
        print(f"params.yaml ← presets/{base}.yaml" + (f" + presets/overlays/{overlay}.yaml" if overlay else ""))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
