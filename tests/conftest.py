"""Shared test setup, and the skip policy of CI: under `CI=true` (what `.ci/run` runs in), a skipped test whose
reason is not listed in `tests/allowed_skips.txt` fails the run, one line per such skip; elsewhere a skip stays a
skip (a machine without espeak-ng, ffmpeg or Chromium runs what it can)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.txt")
_skips: list[tuple[str, str]] = []  # (test id, reason) of every skip of this session


def in_ci() -> bool:
    """True where the environment says CI (`CI=true`, as GitHub Actions, GitLab CI and `.ci/run`'s callers set)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed_skip_reasons(path: Path = ALLOWED_SKIPS) -> set[str]:
    """The skip reasons CI accepts: the lines of `path` that are neither blank nor `#` comments, stripped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    """What `pytest.skip(reason)`, a skipif mark or `importorskip` gave as the reason of a skipped report."""
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ").strip()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def _record(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an expected failure is no environment skip
        _skips.append((report.nodeid, skip_reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)  # a module skipped as a whole (`pytest.skip(allow_module_level=True)`)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def unexpected_skips() -> list[str]:
    """Under CI, one line for each skip of this session whose reason is not allowed; elsewhere none."""
    if not in_ci():
        return []
    allowed = allowed_skip_reasons()
    return [f"CI: unexpected skip of {test}: {reason} (not in tests/{ALLOWED_SKIPS.name})"
            for test, reason in _skips if reason not in allowed]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if unexpected_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in unexpected_skips():
        terminalreporter.write_line(line, red=True, bold=True)
