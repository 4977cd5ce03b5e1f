"""Installs that repeat: one lock file of exact versions, used by the README, CI and the Dockerfile."""
import re

from conftest import ROOT


def requirements(path) -> list[str]:
    return [line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines()
            if line.split("#")[0].strip()]


def name(requirement: str) -> str:
    return re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_lock_pins_every_requirement_exactly_with_torch_first():
    locked = requirements("requirements.lock")
    assert locked[0] == "torch==2.13.0" == requirements("requirements.txt")[0]
    assert all(re.match(r"^[A-Za-z0-9_.\-\[\]]+==[^=<>~]+$", r.split(";")[0].strip()) for r in locked), \
        [r for r in locked if "==" not in r]
    pinned = {name(r) for r in locked}
    assert {name(r) for r in requirements("requirements.txt")} <= pinned
    assert len(pinned) == len(locked)  # one version of each package


def test_readme_ci_and_docker_install_from_the_lock():
    for path in ("README.md", ".ci/run", "Dockerfile"):
        assert "-r requirements.lock" in (ROOT / path).read_text(), path
