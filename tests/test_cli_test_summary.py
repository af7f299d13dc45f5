"""`make test` without PostgreSQL: one line says its runs were skipped and how to turn them on, instead
of a `SKIPPED` line per test; other skips are still listed (`-ra`)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import pytest


def test_on_each_backend(db_url: str) -> None:
    assert db_url


@pytest.mark.parametrize("n", [1, 2])
def test_on_each_backend_twice(db_url: str, n: int) -> None:
    assert db_url


def test_skipped_for_another_reason() -> None:
    pytest.skip("needs a printer")
"""


def test_postgresql_skips_are_one_line_and_other_skips_stay(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"} | {"PYTHONPATH": str(ROOT)}
    # The project's conftest as a plugin, so that its hooks and fixtures run on the probe alone.
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-ra", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "test_probe.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in lines if "TEST_DATABASE_URL is not set" in line], result.stdout
    skipped = [line for line in lines if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and skipped[0].endswith(": needs a printer"), result.stdout
    assert (
        lines.count(
            "3 PostgreSQL runs skipped: set TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test "
            "to run them too"
        )
        == 1
    )
    assert "3 passed, 4 skipped" in lines[-1]  # the count still tells every skip
