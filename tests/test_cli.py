"""The `toolkit` command: help, the end-to-end smoke run, bundle info, one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest


def toolkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands():
    r = toolkit("--help")
    assert r.returncode == 0
    for command in ("encoders", "info", "smoke"):
        assert command in r.stdout


def test_encoders_lists_registry_and_backbones():
    r = toolkit("encoders")
    assert r.stdout.split() == ["conformer", "timm", "torchvision"]
    r = toolkit("encoders", "--backbones", "resnet18*")
    assert "timm: resnet18" in r.stdout and "torchvision: resnet18" in r.stdout


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    r = toolkit("smoke", "--out", str(tmp_path / "smoke"), "--steps", "40")
    assert r.returncode == 0, r.stderr
    figures = dict(kv.split("=") for kv in r.stdout.strip().splitlines()[-1].split())
    assert set(figures) == {"exact_greedy", "exact_beam", "final_loss", "seconds"}
    assert float(figures["final_loss"]) < 5.0  # it learned: the first loss is above 20
    info = toolkit("info", str(tmp_path / "smoke" / "model"))
    assert info.returncode == 0
    summary = json.loads(info.stdout)
    assert summary["encoder"]["backbone"] == "test_resnet" and summary["tokenizer"].startswith("word")


def test_errors_are_one_line_with_status_2(tmp_path):
    r = toolkit("info", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "model bundle directory not found" in r.stderr
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{")
    r = toolkit("info", str(tmp_path / "b"))
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
