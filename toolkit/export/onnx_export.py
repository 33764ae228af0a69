"""Export a trained bundle to ONNX: `export_onnx(model_dir, out_dir, quantize=None)`.

A speech model becomes

    out_dir/
      config.json        a bundle config (`toolkit.bundle`) with "runtime": "onnx" and an "onnx" section: the graph
                         files, their inputs and outputs, and what a runtime needs besides (sample rate, frame
                         geometry, special ids, the decoder's cache shape, decoding defaults in "info")
      tokenizer.json     the model's tokenizer, unchanged
      encoder.onnx       SpeechEncoderGraph (`toolkit.export.graphs`): audio + lengths -> memory (+ CTC log-probs)
      ctc_head.onnx      memory -> CTC log-probs (what the toolkit's searches call on an encoder output)
      decoder_init.onnx  memory -> cross-attention keys / values per layer (models with an attention decoder)
      decoder_step.onnx  tokens + caches per layer -> logits + extended self-attention caches

a captioning model `image_encoder.onnx` (images `(B, 3, H, W)` in [0, 1] at the bundle's image size -> memory)
and the same two decoder graphs, and a language model `lm_step.onnx`. Batch and length axes are dynamic.
`quantize="int8"` quantises the matrix products with a weight dynamically (onnxruntime's quantiser: int8 weights,
activations quantised per call; `quantize_int8`). The folder
loads like any bundle (`toolkit.bundle.load_model` / `toolkit.lm.load_lm`, `toolkit transcribe --model OUT`): the
networks then run in onnxruntime and the searches stay the toolkit's. A part the exporter cannot handle is a
one-line `ToolkitError` naming it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from toolkit.errors import ToolkitError
from toolkit.export.graphs import (CTCHeadGraph, DecoderInitGraph, DecoderStepGraph, ImageEncoderGraph,
                                   LstmLMStepGraph, SpeechEncoderGraph)
from toolkit.model.base import BLANK_ID, BOS_ID, EOS_ID, PAD_ID, UNK_ID

OPSET = 18
# The layout of an exported folder's graphs and config; a runtime refuses another. 2: one cache tensor per layer.
FORMAT = 2
QUANTIZE = ("int8",)


@dataclass
class GraphSpec:
    """One graph to write: its module, example inputs, and the dynamic axes of each input by name."""

    name: str
    module: nn.Module
    inputs: dict[str, Tensor]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]


def _dims(spec: GraphSpec) -> tuple[Any, ...]:
    """Named axes -> `torch.export.Dim`s, one object per name so that axes sharing a name share a size; one entry
    per input in order, those of a `*args` parameter gathered into one tuple as torch.export binds them."""
    names = {axis for axes in spec.dynamic.values() for axis in axes.values()}
    dims = {n: torch.export.Dim(n, min=0) for n in names}
    shapes = [{i: dims[n] for i, n in spec.dynamic.get(k, {}).items()} for k in spec.inputs]
    params = inspect.signature(spec.module.forward).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        fixed = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        shapes = shapes[:fixed] + [tuple(shapes[fixed:])]
    return tuple(shapes)


def export_graph(spec: GraphSpec, path: Path) -> None:
    """Write `spec` as an ONNX file at `path` (torch.export-based exporter; weights inside the file)."""
    spec.module.eval()
    try:
        with torch.no_grad(), _quiet():
            program = torch.onnx.export(
                spec.module, tuple(spec.inputs.values()), dynamo=True, opset_version=OPSET,
                input_names=list(spec.inputs), output_names=spec.outputs,
                dynamic_shapes=_dims(spec), verbose=False, report=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; the user needs the part and the gist
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ToolkitError(f"cannot export the {spec.name} to ONNX ({type(spec.module).__name__}): {first[:300]}"
                           ) from None
    program.save(str(path), external_data=False)


def quantize_int8(path: Path) -> None:
    """Quantise `path` in place: int8 weights for the matrix products with a weight (MatMul / Gemm with a constant
    operand, LSTM), activations quantised dynamically per call. Left in float: products of two activations
    (attention) and the front end's mel filterbank, whose power-spectrum input spans too many orders of magnitude
    for one int8 scale. The graph is first optimised by onnxruntime: constant folding turns e.g. the reshaped
    pointwise-convolution weights into plain initializers, which the quantiser then reaches too."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folded, out = path.with_suffix(".folded.onnx"), path.with_suffix(".int8.onnx")
    with _quiet():
        quant_pre_process(str(path), str(folded), skip_symbolic_shape=True)
        graph = onnx.load(str(folded)).graph
        weights = {i.name for i in graph.initializer} - {i.name for i in graph.initializer if "frontend" in i.name}
        nodes = [n.name for n in graph.node
                 if n.op_type == "LSTM" or (n.op_type in ("MatMul", "Gemm") and n.input[1] in weights)]
        quantize_dynamic(str(folded), str(out), weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                         op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
    folded.unlink()
    out.replace(path)


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantiser print and log progress (some on the root logger): silenced, errors aside."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def speech_graphs(model: nn.Module) -> tuple[list[GraphSpec], dict[str, Any]]:
    """The graphs of a speech model (`EncoderDecoder` with an audio encoder) and its runtime facts."""
    encoder = model.encoder
    if not hasattr(encoder, "output_lengths") or not hasattr(encoder, "frontend"):
        raise ToolkitError(f"cannot export the encoder: {type(encoder).__name__} is not a speech encoder with a "
                           "log-mel front end")
    cfg = encoder.config
    n = encoder.min_input_samples * 20
    audio, lengths = torch.randn(2, n) * 0.1, torch.tensor([n, n * 3 // 4])
    outputs = ["memory", "memory_lengths"] + (["ctc_log_probs"] if model.ctc_head is not None else [])
    specs = [GraphSpec("encoder", SpeechEncoderGraph(model), {"audio": audio, "audio_lengths": lengths}, outputs,
                       {"audio": {0: "batch", 1: "samples"}, "audio_lengths": {0: "batch"}})]
    with torch.no_grad():
        enc_out = encoder(audio, lengths)
    if model.ctc_head is not None:
        specs.append(GraphSpec("ctc_head", CTCHeadGraph(model.ctc_head), {"memory": enc_out.memory},
                               ["ctc_log_probs"], {"memory": {0: "batch", 1: "frames"}}))
    runtime = {
        "kind": "speech",
        "sample_rate": cfg.sample_rate, "n_fft": cfg.n_fft, "hop_length": cfg.hop_length,
        "subsampling": encoder.subsampling_factor, "frame_shift_seconds": encoder.frame_shift_seconds,
        "min_input_samples": encoder.min_input_samples, "d_model": encoder.d_model,
    }
    if model.decoder is not None:
        dec_specs, dec_runtime = decoder_graphs(model.decoder, enc_out.memory, enc_out.lengths)
        specs += dec_specs
        runtime["decoder"] = dec_runtime
    return specs, runtime


def caption_graphs(model: nn.Module, image_size: int) -> tuple[list[GraphSpec], dict[str, Any]]:
    """The graphs of a captioning model: the image encoder on `(B, 3, image_size, image_size)` images in [0, 1]
    (the toolkit's preprocessing; the encoder normalises them itself), and the decoder's."""
    if not getattr(model.encoder, "takes_images", False) or model.decoder is None:
        raise ToolkitError(f"cannot export the encoder: {type(model.encoder).__name__} is not an image encoder with "
                           "a decoder")
    images = torch.rand(2, 3, image_size, image_size)
    with torch.no_grad():
        enc_out = model.encoder(images)
    specs = [GraphSpec("image_encoder", ImageEncoderGraph(model), {"images": images}, ["memory", "memory_lengths"],
                       {"images": {0: "batch"}})]
    dec_specs, dec_runtime = decoder_graphs(model.decoder, enc_out.memory, enc_out.lengths)
    runtime = {"kind": "caption", "image_size": image_size, "grid": list(enc_out.grid),
               "d_model": model.encoder.d_model, "decoder": dec_runtime}
    return specs + dec_specs, runtime


def decoder_graphs(decoder: nn.Module, memory: Tensor, memory_lengths: Tensor
                   ) -> tuple[list[GraphSpec], dict[str, Any]]:
    """The two graphs of the Transformer decoder, with example inputs made from an encoder output."""
    from toolkit.model.decoder import TransformerDecoder

    if not isinstance(decoder, TransformerDecoder):
        raise ToolkitError(f"cannot export the decoder: {type(decoder).__name__} is not the Transformer decoder")
    layers = len(decoder.layers)
    with torch.no_grad():
        cross = DecoderInitGraph(decoder)(memory, memory_lengths)
        tokens = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 5]])
        empty = [c[:, :, :0] for c in cross[:2]]
        first = DecoderStepGraph(decoder)(tokens, memory_lengths,
                                          *[x for i in range(layers) for x in (*empty, *cross[2 * i : 2 * i + 2])])
    cross_names = [f"cross_{kv}_{i}" for i in range(layers) for kv in "kv"]
    self_names = [f"self_{kv}_{i}" for i in range(layers) for kv in "kv"]
    step_inputs = {"tokens": tokens[:, :2], "memory_lengths": memory_lengths}
    step_dynamic = {"tokens": {0: "batch", 1: "new"}, "memory_lengths": {0: "batch"}}
    for i in range(layers):
        for j, kv in enumerate("kv"):
            step_inputs[f"self_{kv}_{i}"] = first[1 + 2 * i + j]
            step_dynamic[f"self_{kv}_{i}"] = {0: "batch", 2: "past"}
        for j, kv in enumerate("kv"):
            step_inputs[f"cross_{kv}_{i}"] = cross[2 * i + j]
            step_dynamic[f"cross_{kv}_{i}"] = {0: "batch", 2: "frames"}
    specs = [
        GraphSpec("decoder_init", DecoderInitGraph(decoder), {"memory": memory, "memory_lengths": memory_lengths},
                  cross_names, {"memory": {0: "batch", 1: "frames"}, "memory_lengths": {0: "batch"}}),
        GraphSpec("decoder_step", DecoderStepGraph(decoder), step_inputs,
                  ["logits"] + [f"new_{n}" for n in self_names], step_dynamic),
    ]
    _, heads, _, head_dim = cross[0].shape
    runtime = {"num_layers": layers, "num_heads": heads, "head_dim": head_dim, "max_len": decoder.max_len,
               "vocab_size": decoder.vocab_size}
    return specs, runtime


def lm_graphs(lm: nn.Module) -> tuple[list[GraphSpec], dict[str, Any]]:
    """The step graph of an LSTM language model and its state shape."""
    from toolkit.lm.model import LstmLM

    if not isinstance(lm, LstmLM):
        raise ToolkitError(f"cannot export the language model: {type(lm).__name__} is not an LstmLM")
    state = lm.init_state(2)
    spec = GraphSpec("lm_step", LstmLMStepGraph(lm), {"tokens": torch.tensor([BOS_ID, 5]), "h": state.h,
                                                       "c": state.c},
                     ["log_probs", "new_h", "new_c"], {"tokens": {0: "batch"}, "h": {1: "batch"}, "c": {1: "batch"}})
    cfg = lm.config
    return [spec], {"kind": "lm", "num_layers": cfg.num_layers, "hidden_dim": cfg.hidden_dim}


def export_onnx(model_dir: str | Path, out_dir: str | Path, quantize: Literal["int8"] | None = None,
                progress: bool = False) -> Path:
    """Export the bundle at `model_dir` (a speech model, a captioning model or a language model) to `out_dir`
    (written atomically: a failed export leaves nothing). Returns `out_dir`."""
    from toolkit.bundle import read_bundle_config, write_bundle

    if quantize is not None and quantize not in QUANTIZE:
        raise ToolkitError(f"--quantize: one of {', '.join(QUANTIZE)}, got {quantize!r}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = read_bundle_config(model_dir)
    if meta.get("runtime", "torch") != "torch":
        raise ToolkitError(f"{model_dir}: already an exported ({meta['runtime']}) model; export the PyTorch bundle")
    if meta["info"].get("task") == "lm":
        from toolkit.lm import load_lm

        bundle = load_lm(model_dir)
        specs, runtime = lm_graphs(bundle.model)
    else:
        from toolkit.bundle import load_model

        bundle = load_model(model_dir)
        if getattr(bundle.model.encoder, "takes_images", False):
            from toolkit.pipelines.captioner import DEFAULT_IMAGE_SIZE

            specs, runtime = caption_graphs(bundle.model, int(meta["info"].get("image_size", DEFAULT_IMAGE_SIZE)))
        else:
            specs, runtime = speech_graphs(bundle.model)
    runtime.update(format=FORMAT, blank_id=BLANK_ID, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
                   opset=OPSET, quantize=quantize)
    # For a runtime without the toolkit: every id's piece ("▁" stands for a space) and how pieces join into text
    runtime.update(tokens=bundle.tokenizer.vocab(), token_join=" " if bundle.tokenizer.kind == "word" else "")
    runtime["graphs"] = {s.name: {"file": f"{s.name}.onnx", "inputs": list(s.inputs), "outputs": s.outputs}
                         for s in specs}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.graphs.", dir=out_dir.parent))
    try:
        for spec in specs:
            if progress:
                print(f"  {spec.name}.onnx", flush=True)
            export_graph(spec, work / f"{spec.name}.onnx")
            if quantize == "int8":
                quantize_int8(work / f"{spec.name}.onnx")
        texts = {}
        if getattr(bundle.model, "lexicon", None) is not None and "lexicon.txt" in meta["files"]:
            texts["lexicon.txt"] = (model_dir / "lexicon.txt").read_text(encoding="utf-8")
        info = {**meta["info"], "exported_from": str(model_dir)}
        write_bundle(out_dir, None, bundle.tokenizer, meta["model"], info, texts,
                     files={f"{s.name}.onnx": work / f"{s.name}.onnx" for s in specs},
                     runtime="onnx", extra={"onnx": runtime})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir
