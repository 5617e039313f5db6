"""Shared fixtures: one artifact cache per session (Fashion-MNIST converted once) and CLI runners."""

from __future__ import annotations

import os

# The test machine has 2 cores shared with other work; one intra-op thread is several times faster
# there than two contending ones. Set before torch is imported (in-process and in subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """An artifact cache shared by the whole session (stages cached across tests)."""
    return tmp_path_factory.mktemp("clipbench-cache")


@pytest.fixture(scope="session")
def fashion_mnist_dir(cache_dir) -> Path:
    """The converted Fashion-MNIST dataset inside the session cache (converted on first use)."""
    from clipbench.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist(cache_dir)
    return cache_dir / "data" / "fashion-mnist"


@pytest.fixture
def fresh_cache_dir(tmp_path, fashion_mnist_dir) -> Path:
    """An empty artifact cache (no stage artifacts) that reuses the converted dataset by a link."""
    root = tmp_path / "fresh-cache"
    (root / "data").mkdir(parents=True)
    (root / "data" / "fashion-mnist").symlink_to(fashion_mnist_dir, target_is_directory=True)
    return root


@pytest.fixture
def cli_runner():
    """Invoke ``clipbench.cli.cli`` in-process: ``cli_runner(args) -> click.testing.Result``."""
    from clipbench.cli import cli

    runner = CliRunner()

    def invoke(args: list[str]):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=True)

    return invoke


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_subprocess(tmp_path):
    """Run ``python -m clipbench.cli ARGS`` (i.e. ``clipbench.cli.main``) in a fresh interpreter."""

    def run(args: list[str], timeout: float = 120) -> Completed:
        done = subprocess.run(
            [sys.executable, "-m", "clipbench.cli", *[str(a) for a in args]],
            capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=dict(os.environ),
        )
        return Completed(done.returncode, done.stdout, done.stderr)

    return run
