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
    # and it captions held-out images: 40 steps give about 0.22 exact matches (60 captions; saying the most
    # common one every time scores 0.0625 on the held-out split)
    assert float(figures["exact_greedy"]) >= 0.125 and float(figures["exact_beam"]) >= 0.125, figures
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


def test_synth_kinds_take_only_their_own_options(tmp_path, capsys):
    from toolkit.cli import main

    out = ["--out", str(tmp_path)]
    for argv, refused in ((["shapes", *out, "--workers", "2"], "unrecognized arguments: --workers 2"),
                          (["speech", *out, "--image-size", "64"], "unrecognized arguments: --image-size 64"),
                          (["longform", *out, "--manifest", "m", "--train", "3"], "unrecognized arguments: --train 3"),
                          (["shapes", *out, "--video"], "unrecognized arguments: --video"),
                          (["longform", *out], "the following arguments are required: --manifest"),
                          (["speech"], "the following arguments are required: --out"),
                          ([], "the following arguments are required: KIND")):
        with pytest.raises(SystemExit) as e:
            main(["synth", *argv])
        assert e.value.code == 2 and refused in capsys.readouterr().err, argv
    assert not any(tmp_path.iterdir())
    helps = {}
    for kind in ("shapes", "speech", "longform"):
        with pytest.raises(SystemExit) as e:
            main(["synth", kind, "--help"])
        helps[kind] = capsys.readouterr().out
        assert e.value.code == 0 and f"usage: toolkit synth {kind}" in helps[kind]
        assert "--out" in helps[kind] and "--seed" in helps[kind]
    assert "--image-size" in helps["shapes"] and "--workers" not in helps["shapes"]
    assert "--voice-shift" in helps["speech"] and "--manifest" not in helps["speech"]
    assert "--video" in helps["longform"] and "--train" not in helps["longform"]
