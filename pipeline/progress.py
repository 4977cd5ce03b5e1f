"""Whether to draw progress bars: only on an interactive terminal, and never when `CI` is set."""
import os
import sys


def show_progress() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")
