"""Spreading stage processes that run at the same time (DVC's queue workers) over a machine's GPUs.

Each stage that trains or evaluates on GPUs claims `train.devices` of them before CUDA starts: the GPUs with
the fewest live claims, ties to the lowest index. Claims are process ids in one JSON registry per user in the
temporary folder, read and written under an exclusive file lock; a claim ends when its process ends (a dead
process's claim is dropped at the next read). The claimed GPUs become the process's `CUDA_VISIBLE_DEVICES`, so
to the stage they are GPUs 0, 1, …. With as many workers as GPUs each running experiment has its own GPU; with
more workers than GPUs they share, the least loaded first."""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REGISTRY = Path(tempfile.gettempdir()) / f"qs4d-gpu-claims-{os.getuid()}.json"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    return True


@contextmanager
def _locked(registry: Path) -> Iterator[dict[int, list[int]]]:
    """The live claims {pid: GPUs} of `registry`, held under its lock; changes to the dict are written back."""
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = registry.read_text() if registry.exists() else ""
            stored = json.loads(text) if text.strip() else {}
            claims = {int(pid): gpus for pid, gpus in stored.items() if alive(int(pid))}
            yield claims
            registry.write_text(json.dumps(claims))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def claim(wanted: int, available: int, pid: int | None = None, registry: Path = REGISTRY) -> list[int]:
    """Claim `wanted` of GPUs 0 … `available` − 1 for process `pid` (this one by default): those with the fewest
    live claims of other processes, ties to the lowest index. Returns them in increasing order."""
    if not 1 <= wanted <= available:
        raise ValueError(f"cannot claim {wanted} of {available} GPUs")
    pid = os.getpid() if pid is None else pid
    with _locked(registry) as claims:
        claims.pop(pid, None)
        load = [0] * available
        for gpus in claims.values():
            for gpu in gpus:
                if gpu < available:
                    load[gpu] += 1
        chosen = sorted(sorted(range(available), key=lambda gpu: (load[gpu], gpu))[:wanted])
        claims[pid] = chosen
    return chosen


def release(pid: int | None = None, registry: Path = REGISTRY) -> None:
    """End the claim of process `pid` (this one by default)."""
    pid = os.getpid() if pid is None else pid
    with _locked(registry) as claims:
        claims.pop(pid, None)


def claim_visible_gpus(wanted: int, available: int, environ: dict = os.environ,
                       registry: Path = REGISTRY) -> list[int] | None:
    """Set `CUDA_VISIBLE_DEVICES` of this process to `wanted` claimed GPUs when there is a choice: more than one
    GPU and no `CUDA_VISIBLE_DEVICES` already set (a user's own pinning wins). Must run before CUDA starts.
    Returns the claimed GPUs, or None when nothing was claimed."""
    if available < 2 or "CUDA_VISIBLE_DEVICES" in environ or wanted > available:
        return None
    gpus = claim(wanted, available, registry=registry)
    atexit.register(release, registry=registry)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return gpus
