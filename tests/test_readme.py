"""Every command in README.md is run by a test or by .ci/run, so none can rot:
- the shell blocks: `bash recipes/quickstart/run.sh` (tests/test_quickstart.py runs it), `python -m pytest -q`
  (.ci/run runs it), the torchrun lines (their `toolkit train` arguments parse and their config loads), the
  export block (run here on tiny models);
- the command table: every command exists and accepts every option the table shows;
- the Python blocks: executed here, with tiny models saved at the paths they name.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from toolkit.bundle import save_model
from toolkit.cli import build_parser
from toolkit.config import load_config
from toolkit.lm.bundle import save_lm
from toolkit.lm.model import LstmLM, LstmLMConfig
from toolkit.model.factory import build_model
from toolkit.text import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[str]:
    """The commands of the bash blocks, continuation lines joined, comments dropped."""
    text = "\n".join(blocks("bash")).replace("\\\n", " ")
    return [line.split(" #")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def subcommands(parser) -> dict:
    """{name: parser} of a parser's subcommands ({} when it has none)."""
    sub = next((a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"), None)
    return dict(sub.choices) if sub is not None else {}


def subcommand_options() -> dict[str, set[str]]:
    """The options of every command, and of every kind of a command that has kinds (key "synth speech")."""
    options = {}
    for name, p in subcommands(build_parser()).items():
        options[name] = {s for a in p._actions for s in a.option_strings}
        for kind, q in subcommands(p).items():
            options[f"{name} {kind}"] = {s for a in q._actions for s in a.option_strings}
    return options


def test_every_shell_command_is_exercised():
    commands = shell_commands()
    assert commands, "README has no bash block"
    ci = (ROOT / ".ci/run").read_text()
    for command in commands:
        if command == "bash recipes/quickstart/run.sh":
            assert "recipes/quickstart/run.sh" in (ROOT / "tests/test_quickstart.py").read_text()
        elif command == "python -m pytest -q":
            assert command in ci
        elif command in shipping_commands():
            continue  # test_shipping_block_runs
        elif command.startswith("torchrun"):
            args = shlex.split(command)
            toolkit_args = args[args.index("toolkit") + 1 :]
            parsed = build_parser().parse_args(toolkit_args)
            assert parsed.command == "train"
            from toolkit.tasks.asr import AsrExperiment

            load_config(AsrExperiment, ROOT / parsed.config)  # the recipe config it names exists and is valid
        else:
            pytest.fail(f"README command not covered by any test: {command}")


def test_command_table_matches_the_parser():
    options = subcommand_options()
    rows = [line for line in README.splitlines() if line.startswith("| `toolkit ")]
    assert len(rows) >= 9
    for row in rows:
        cell = re.split(r"(?<!\\)\|", row)[1]  # `\|` is a pipe inside a cell
        for usage in re.findall(r"`(toolkit [^`]*)`", cell):
            words = usage.replace("\\|", "|").split()
            name = words[1]
            assert name in options, f"README names a command that does not exist: {usage}"
            kinds = words[2].split("|") if len(words) > 2 and f"{name} {words[2].split('|')[0]}" in options else []
            for command in [f"{name} {kind}" for kind in kinds] or [name]:  # `toolkit synth shapes|speech --out D`
                assert command in options, f"README names a command that does not exist: toolkit {command}"
                for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", usage):
                    assert option in options[command], f"`toolkit {command}` has no option {option} (README: {usage})"


@pytest.fixture
def quickstart_models(tmp_path, monkeypatch) -> Path:
    """Tiny stand-ins for the quickstart's models at the paths the README uses, plus its example inputs."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exp = tmp_path / "exp/quickstart"
    ctok = train_tokenizer("word", ["a red circle", "a blue square"])
    cap = build_model({"vocab_size": ctok.vocab_size, "d_model": 32, "encoder": {"name": "timm",
                       "backbone": "test_resnet"}, "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64}})
    save_model(exp / "caption/final", cap.eval(), ctok, info={"task": "caption", "image_size": 32})
    tok = train_tokenizer("char", ["hello world", "the quick brown fox"])
    asr = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "ctc": True,
                       "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64},
                       "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 64}})
    save_model(exp / "speech/final", asr.eval(), tok,
               info={"task": "asr", "decoding": {"ctc_weight": 0.3, "lm_weight": 0.5, "length_bonus": 0.5}})
    lm = LstmLM(LstmLMConfig(vocab_size=tok.vocab_size, embed_dim=16, hidden_dim=16))
    save_lm(exp / "speech/lm/final", lm.eval(), tok)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), np.uint8)).save("a.png")
    t = np.arange(32000) / 16000
    sf.write("a.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 1 < 0.6)).astype(np.float32), 16000)
    return tmp_path


def test_python_api_block_runs(quickstart_models):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg makes the example video")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-i", "a.wav",
                    "-t", "2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", "talk.mp4"], check=True)
    exec(compile(blocks("python")[0], "README.md (Python API)", "exec"), {})
    assert Path("talk.vtt").read_text().startswith("WEBVTT")


def test_python_build_block_runs(quickstart_models):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), "resnet18.safetensors")
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9))) for _ in range(3000)]
    texts = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
    exec(compile(blocks("python")[1], "README.md (build a model)", "exec"), {"texts": texts})
    assert Path("exp/my_model/model.safetensors").is_file()


def shipping_commands() -> list[str]:
    """The commands of the bash block that exports a model (README "Shipping a model")."""
    block = next(b for b in blocks("bash") if "toolkit export" in b)
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]


def test_shipping_block_runs(quickstart_models):
    import sys

    pytest.importorskip("onnxruntime")
    shutil.copy("a.wav", "talk.wav")
    for command in shipping_commands():
        args = shlex.split(command)
        if args[0] == "python":
            run = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], capture_output=True, text=True)
        else:
            run = subprocess.run([sys.executable, "-m", "toolkit", *args[1:]], capture_output=True, text=True)
        assert run.returncode == 0, f"{command}: {run.stderr}"
    assert Path("exp/speech_int8/encoder.onnx").is_file() and '"text"' in run.stdout


def test_results_table_commands_exist_and_take_their_options():
    """The results table's reproduce commands: the recipe scripts exist (tests run them: the quickstart's tiny mode
    runs the shapes and speech recipes), and each benchmark script accepts the options the table gives it."""
    import sys

    commands = [c for row in README.splitlines() if row.startswith("| ") for c in re.findall(r"`([^`]+)`", row)
                if c.startswith(("python tests/benchmarks/", "bash recipes/"))]
    assert sum(c.startswith("python tests/benchmarks/") for c in commands) >= 6
    for command in commands:
        args = shlex.split(command.replace("...", ""))
        script = ROOT / args[1]
        assert script.is_file(), command
        if args[0] == "bash":
            continue
        help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                   check=True).stdout
        for option in (a for a in args[2:] if a.startswith("--")):
            assert option in help_text, f"{command}: {script.name} has no option {option}"
