"""Cost calculator: `python -m pipeline.cost --layers 4 --d-model 128 --d-state 128 --d-in 1 --d-out 10
--bits all=12 A=8` prints QS4D's ACE, model size (bits) and ADC complexity as JSON."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import parse_bits
from pipeline.cost.proxies import model_proxies


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.cost", description=__doc__)
    for name, default in (("layers", 4), ("d-model", 128), ("d-state", 128), ("d-in", 1), ("d-out", 10)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--bits", nargs="*", default=[], help="component=bits (1..16 or float); all = default")
    args = parser.parse_args(argv)
    try:
        bits = parse_bits(args.bits)
        sizes = [args.layers, args.d_model, args.d_state, args.d_in, args.d_out]
        if min(sizes) < 1:
            raise ValueError(f"sizes must be ≥ 1, got layers, d-model, d-state, d-in, d-out = {sizes}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(model_proxies(*sizes, bits=bits)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
