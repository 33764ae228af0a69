"""CI's skip policy (tests/conftest.py): under CI=true a skip whose reason is not in tests/allowed_skips.txt fails
the run with one line naming the test and its reason; an allowed reason, or any skip outside CI, does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ALLOWED_SKIPS, allowed_skip_reasons

TESTS = Path(__file__).resolve().parent
PLANTED = """
import pytest

def test_runs():
    pass

def test_allowed():
    pytest.skip({allowed!r})

def test_planted():
    pytest.skip("planted: a tool that CI installs is missing")

@pytest.mark.skipif(True, reason="planted mark")
def test_planted_mark():
    pass
"""


def run_planted(folder: Path, ci: bool, *args: str) -> subprocess.CompletedProcess:
    """pytest in a subprocess on `args` (the planted files) in `folder`, the project's conftest its only plugin."""
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "--rootdir",
               str(folder), *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_an_unlisted_skip_fails_a_ci_run_and_only_there(tmp_path):
    allowed = sorted(allowed_skip_reasons())[0]
    (tmp_path / "test_planted.py").write_text(PLANTED.format(allowed=allowed))
    (tmp_path / "test_planted_module.py").write_text(
        'import pytest\n\npytest.skip("planted module", allow_module_level=True)\n')

    ci = run_planted(tmp_path, True, ".")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    lines = [line for line in ci.stdout.splitlines() if line.startswith("CI: unexpected skip")]
    note = "(not in tests/allowed_skips.txt)"
    assert sorted(lines) == [
        f"CI: unexpected skip of test_planted.py::test_planted: planted: a tool that CI installs is missing {note}",
        f"CI: unexpected skip of test_planted.py::test_planted_mark: planted mark {note}",
        f"CI: unexpected skip of test_planted_module.py: planted module {note}",
    ], ci.stdout
    assert "1 passed, 4 skipped" in ci.stdout

    only_allowed = run_planted(tmp_path, True, "test_planted.py", "-k", "runs or allowed")
    assert only_allowed.returncode == 0 and "1 passed, 1 skipped" in only_allowed.stdout, only_allowed.stdout

    outside = run_planted(tmp_path, False, ".")
    assert outside.returncode == 0 and "CI: unexpected" not in outside.stdout, outside.stdout
    assert "1 passed, 4 skipped" in outside.stdout


def test_every_allowed_skip_says_why():
    """Each reason of the allow-list comes right after a comment (the why) or another reason of the same comment."""
    lines = ALLOWED_SKIPS.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            assert above.startswith("#") or above.strip() in allowed_skip_reasons(), line
