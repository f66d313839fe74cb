"""The lock files: every package pinned with hashes, the requirements' pins kept, and no CUDA from the public index."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"requirements.lock": "requirements.txt", "requirements-test.lock": "requirements-test.txt"}
# What a PyTorch install drags in; none of it may come back through a dependency.
FORBIDDEN = re.compile(r"^(torch|torchvision|triton|nvidia-.*|sentence-transformers|transformers)$")
MAX_DOWNLOAD_MB = 300  # a fresh `make run` (issue 18)


def normalise(name: str) -> str:
    """A package name as the index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements or lock file (extras dropped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\#]+)", line)
        if match:
            found[normalise(match[1])] = match[3]
    return found


def locked_entries(path: Path) -> list[tuple[str, list[str]]]:
    """(requirement line, its hashes) for each entry of a uv-generated lock file."""
    entries: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            entries.append((line.rstrip(" \\"), []))
        elif line.strip().startswith("--hash=sha256:"):
            entries[-1][1].append(line.strip().rstrip(" \\"))
    return entries


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_hashes(lock):
    """Each entry is name==version with at least one sha256; nothing editable, no URL, no PyTorch."""
    entries = locked_entries(ROOT / lock)
    assert len(entries) > 50
    for requirement, hashes in entries:
        assert re.match(r"^[a-z0-9][a-z0-9.-]*==\S+( ; .+)?$", requirement), requirement
        assert hashes, f"{requirement} has no hash"
    assert [name for name in pins(ROOT / lock) if FORBIDDEN.match(name)] == []


@pytest.mark.parametrize(("lock", "requirements"), LOCKS.items())
def test_the_locks_keep_the_requirements_pins(lock, requirements):
    """Every version pinned in requirements*.txt is the one locked: `make lock` has run since the last change."""
    wanted = pins(ROOT / requirements)
    if requirements == "requirements-test.txt":
        wanted |= pins(ROOT / "requirements.txt")
    locked = pins(ROOT / lock)
    assert {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version} == {}


def test_the_test_lock_agrees_with_the_runtime_lock():
    """A package in both locks has the same version in both, so tests run what production installs."""
    runtime, test = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-test.lock")
    assert {name: (version, test.get(name)) for name, version in runtime.items() if test.get(name) != version} == {}


def size_in_mb(amount: str, unit: str) -> float:
    """pip's printed size (`276 kB`, `8.3 MB`) in MB."""
    return float(amount) * {"bytes": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


@pytest.mark.parametrize("lock", LOCKS)
def test_the_public_index_resolves_the_lock_without_cuda(lock, tmp_path):
    """pip, ignoring this machine's wheel cache and local indexes, would fetch everything from PyPI and no CUDA.

    A dry run reads only each wheel's metadata, so it takes a few seconds. It needs the package index.
    """
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "--dry-run", "--ignore-installed",
         "--no-deps", "--require-hashes", "--report", str(report), "-r", str(ROOT / lock)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    installs = json.loads(report.read_text())["install"]
    names = {normalise(item["metadata"]["name"]) for item in installs}
    assert len(names) > 50 and names <= set(pins(ROOT / lock))
    assert [name for name in names if FORBIDDEN.match(name)] == []
    assert {item["download_info"]["url"].split("/")[2] for item in installs} == {"files.pythonhosted.org"}
    sizes = re.findall(r"Downloading \S+ \(([\d.]+) (bytes|kB|MB|GB)\)", run.stdout)
    assert len(sizes) == len(installs), run.stdout[-2000:]
    total = sum(size_in_mb(amount, unit) for amount, unit in sizes)
    if lock == "requirements.lock":
        assert total <= MAX_DOWNLOAD_MB, f"a fresh install would download {total:.0f} MB"
