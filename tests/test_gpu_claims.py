import subprocess
import sys

import pytest

from pipeline import gpu_claims
from pipeline.gpu_claims import claim, claim_visible_gpus, release


@pytest.fixture
def sleepers():
    """Live processes whose ids stand for other stages."""
    started = []

    def start():
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return started[-1].pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_each_running_stage_gets_the_least_claimed_gpu(tmp_path, sleepers):
    registry = tmp_path / "claims.json"
    first, second, third = sleepers(), sleepers(), sleepers()
    assert claim(1, 2, first, registry) == [0]
    assert claim(1, 2, second, registry) == [1]  # one worker per GPU
    assert claim(1, 2, third, registry) == [0]  # more workers than GPUs: they share, lowest index on a tie
    release(first, registry)
    assert claim(2, 3, sleepers(), registry) == [0, 2]  # GPU 1 and GPU 0 held once each before: 0 and the free 2


def test_a_claim_ends_with_its_process(tmp_path, sleepers):
    registry = tmp_path / "claims.json"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim(1, 2, int(ended.stdout), registry)  # a stage that has since ended without releasing (killed)
    assert claim(1, 2, sleepers(), registry) == [0]
    claim(1, 2, sleepers(), registry)
    again = sleepers()
    assert claim(1, 2, again, registry) == [0] and claim(1, 2, again, registry) == [0]  # a re-claim replaces


def test_stages_starting_together_spread_over_the_gpus(tmp_path):
    registry = tmp_path / "claims.json"
    code = (f"import sys, time; sys.path.insert(0, {str(gpu_claims.__file__.rsplit('/', 2)[0])!r}); "
            "from pathlib import Path; from pipeline.gpu_claims import claim; "
            f"print(claim(1, 4, registry=Path({str(registry)!r}))[0], flush=True); time.sleep(5)")
    workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        assert sorted(int(worker.stdout.readline()) for worker in workers) == [0, 1, 2, 3]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def test_visible_gpus_are_set_only_where_there_is_a_choice(tmp_path):
    registry = tmp_path / "claims.json"
    assert claim_visible_gpus(1, 1, environ := {}, registry) is None and environ == {}  # one GPU: nothing to pick
    pinned = {"CUDA_VISIBLE_DEVICES": "3"}
    assert claim_visible_gpus(1, 4, pinned, registry) is None and pinned == {"CUDA_VISIBLE_DEVICES": "3"}
    assert claim_visible_gpus(2, 4, environ, registry) == [0, 1] and environ == {"CUDA_VISIBLE_DEVICES": "0,1"}
    release(registry=registry)
    with pytest.raises(ValueError, match="cannot claim 3 of 2 GPUs"):
        claim(3, 2, registry=registry)
