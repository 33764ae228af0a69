"""Exported models run by onnxruntime behind the toolkit's own interfaces.

`load_exported_model(dir)` rebuilds an `EncoderDecoder` whose encoder, CTC head and decoder are onnxruntime
sessions over the graphs `toolkit.export.onnx_export` wrote (`OnnxSpeechEncoder` or `OnnxImageEncoder`,
`OnnxCTCHead`, `OnnxDecoder`); `load_exported_lm(dir)` an `OnnxLstmLM`. They implement `Encoder`, `Decoder` and
`LanguageModel`, so every search (greedy, beam, joint CTC/attention, LM fusion), the transcriber, the subtitler,
the captioner and `toolkit evaluate` run them unchanged: only the networks move to onnxruntime. Tensors cross as
CPU numpy arrays. Attention maps (`Captioner.caption(attention=True)`) need the PyTorch model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.errors import BundleError, ToolkitError
from toolkit.export.onnx_export import FORMAT
from toolkit.lm.model import LanguageModel, LstmLMConfig, LstmState
from toolkit.model.audio_encoders import Conv2dSubsampling
from toolkit.model.audio_frontend import frame_lengths
from toolkit.model.base import Decoder, DecoderState, Encoder, EncoderDecoder, EncoderOutput
from toolkit.model.factory import ModelConfig


class OnnxGraph:
    """One onnxruntime session on the CPU; calling it with the graph's inputs in order returns its outputs as
    torch tensors. `threads`: intra-op threads (default: torch's thread count, i.e. OMP_NUM_THREADS / --threads)."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between runs: the search's PyTorch ops run between the calls, on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feeds = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names, inputs)}
        return tuple(torch.from_numpy(y) for y in self.session.run(None, feeds))


class OnnxSpeechEncoder(Encoder):
    """The exported front end + encoder: waveform `(B, N)` + lengths `(B,)` -> EncoderOutput(memory `(B, T', D)`,
    lengths `(B,)`), with the geometry (`output_lengths`, `min_input_samples`, ...) of the encoder it came from.
    Holds one empty parameter so that `next(model.parameters()).device` says where its outputs land (the CPU)."""

    def __init__(self, graph: OnnxGraph, runtime: dict[str, Any]):
        super().__init__()
        self.graph = graph
        self.d_model = int(runtime["d_model"])
        self.sample_rate = int(runtime["sample_rate"])
        self.n_fft, self.hop_length = int(runtime["n_fft"]), int(runtime["hop_length"])
        self.frame_shift_seconds = float(runtime["frame_shift_seconds"])
        self.min_input_samples = int(runtime["min_input_samples"])
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def output_lengths(self, num_samples: Tensor) -> Tensor:
        """`(B,)` waveform lengths in samples -> `(B,)` int64 memory lengths."""
        return Conv2dSubsampling.output_lengths(frame_lengths(num_samples, self.n_fft, self.hop_length))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        if x.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, N), got shape {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((x.size(0),), x.size(1), dtype=torch.long)
        if x.size(1) < self.min_input_samples:  # the graph needs one frame; the lengths keep the items empty
            x = nn.functional.pad(x, (0, self.min_input_samples - x.size(1)))
        memory, memory_lengths = self.graph(x.float(), lengths.long())[:2]
        return EncoderOutput(memory=memory, lengths=memory_lengths)


class OnnxImageEncoder(Encoder):
    """The exported image encoder: images `(B, 3, H, W)` in [0, 1] at the size it was exported for ->
    EncoderOutput(memory `(B, H'W', D)`, lengths, grid `(H', W')`)."""

    takes_images = True

    def __init__(self, graph: OnnxGraph, runtime: dict[str, Any]):
        super().__init__()
        self.graph = graph
        self.d_model = int(runtime["d_model"])
        self.image_size = int(runtime["image_size"])
        self.grid = tuple(int(g) for g in runtime["grid"])
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"this exported encoder takes images of shape (B, 3, {self.image_size}, "
                             f"{self.image_size}), got {tuple(x.shape)}")
        memory, memory_lengths = self.graph(x.float())
        return EncoderOutput(memory=memory, lengths=memory_lengths, grid=self.grid)


class OnnxCTCHead(nn.Module):
    """memory `(B, T, D)` -> CTC log-probabilities `(B, T, V)` float32, by the exported `ctc_head` graph."""

    def __init__(self, graph: OnnxGraph):
        super().__init__()
        self.graph = graph

    def forward(self, memory: Tensor) -> Tensor:
        return self.graph(memory.float())[0]


@dataclass
class OnnxDecoderState(DecoderState):
    """The exported decoder's caches for N rows, per layer: cross `(k_0, v_0, k_1, v_1, ...)` each `(N, H, S, Dh)`,
    self the same of the t tokens read so far `(N, H, t, Dh)`; memory_lengths `(N,)`."""

    memory_lengths: Tensor
    cross: tuple[Tensor, ...]
    self_kv: tuple[Tensor, ...]

    @property
    def offset(self) -> int:
        return self.self_kv[0].size(2)

    def select(self, index: Tensor) -> "OnnxDecoderState":
        return OnnxDecoderState(self.memory_lengths.index_select(0, index),
                                tuple(c.index_select(0, index) for c in self.cross),
                                tuple(c.index_select(0, index) for c in self.self_kv))

    def select_beams(self, index: Tensor) -> "OnnxDecoderState":
        return OnnxDecoderState(self.memory_lengths, self.cross, tuple(c.index_select(0, index) for c in self.self_kv))


class OnnxDecoder(Decoder):
    """The exported Transformer decoder: `decoder_init` once per input, `decoder_step` per call of `forward`."""

    search_threads = 1  # the networks run in onnxruntime; the search's own small tensor ops on one thread

    def __init__(self, init_graph: OnnxGraph, step_graph: OnnxGraph, runtime: dict[str, Any]):
        super().__init__()
        self.init_graph, self.step_graph = init_graph, step_graph
        self.vocab_size = int(runtime["vocab_size"])
        self._max_len = int(runtime["max_len"])

    @property
    def max_len(self) -> int:
        return self._max_len

    def init_state(self, enc_out: EncoderOutput, record_attention: bool = False) -> OnnxDecoderState:
        if record_attention:
            raise ToolkitError("attention maps need the PyTorch model; the exported decoder does not return them")
        cross = self.init_graph(enc_out.memory.float(), enc_out.lengths.long())
        return OnnxDecoderState(enc_out.lengths.long(), cross, tuple(c[:, :, :0] for c in cross))

    def forward(self, tokens: Tensor, state: OnnxDecoderState) -> tuple[Tensor, OnnxDecoderState]:
        if state.offset + tokens.size(1) > self.max_len:
            raise ValueError(f"decoder max_len {self.max_len} exceeded ({state.offset + tokens.size(1)} tokens)")
        caches = [c for i in range(0, len(state.cross), 2)  # per layer: self k, v, cross k, v
                  for c in (*state.self_kv[i : i + 2], *state.cross[i : i + 2])]
        logits, *self_kv = self.step_graph(tokens.long(), state.memory_lengths, *caches)
        return logits, OnnxDecoderState(state.memory_lengths, state.cross, tuple(self_kv))


class OnnxLstmLM(LanguageModel):
    """The exported LSTM language model: `lm_step` per token, its state an `LstmState`."""

    def __init__(self, graph: OnnxGraph, config: LstmLMConfig):
        super().__init__()
        self.graph = graph
        self.config = config
        self.vocab_size = config.vocab_size
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> LstmState:
        zeros = torch.zeros(self.config.num_layers, batch_size, self.config.hidden_dim)
        return LstmState(zeros, zeros.clone())

    def step(self, tokens: Tensor, state: LstmState) -> tuple[Tensor, LstmState]:
        log_probs, h, c = self.graph(tokens.long(), state.h, state.c)
        return log_probs, LstmState(h, c)


def _graphs(directory: Path, runtime: dict[str, Any], needed: tuple[str, ...]) -> dict[str, OnnxGraph]:
    if runtime.get("format") != FORMAT:
        raise BundleError(f"{directory / 'config.json'}: onnx.format {runtime.get('format')!r}, this toolkit reads "
                          f"{FORMAT}: export the model again with this toolkit")
    graphs = runtime.get("graphs")
    if not isinstance(graphs, dict):
        raise BundleError(f"{directory / 'config.json'}: onnx.graphs is missing or not an object")
    out = {}
    for name, entry in graphs.items():
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or "/" in file or "\\" in file:
            raise BundleError(f"{directory / 'config.json'}: onnx.graphs.{name}.file must be a file name")
        out[name] = OnnxGraph(directory / file)
    missing = [n for n in needed if n not in out]
    if missing:
        raise BundleError(f"{directory / 'config.json'}: onnx.graphs lacks {', '.join(missing)}")
    return out


def _check_cpu(directory: Path, device: str | torch.device) -> None:
    if torch.device(device).type != "cpu":
        raise ToolkitError(f"{directory}: an exported (onnx) model runs on the CPU; load it with device 'cpu'")


def load_exported_model(directory: Path, meta: dict[str, Any], config: ModelConfig,
                        device: str | torch.device = "cpu") -> EncoderDecoder:
    """The onnxruntime-run `EncoderDecoder` of an exported speech or captioning model of `config` (`meta`: its
    checked config.json, files verified; the tokenizer: `toolkit.bundle.load_model`)."""
    _check_cpu(directory, device)
    runtime = meta["onnx"]
    kind = runtime.get("kind")
    if kind not in ("speech", "caption"):
        raise BundleError(f"{directory / 'config.json'}: onnx.kind {kind!r} is neither 'speech' nor 'caption'")
    first = "encoder" if kind == "speech" else "image_encoder"
    needed = (first,) + (("ctc_head",) if config.ctc else ()) + (
        ("decoder_init", "decoder_step") if config.decoder is not None else ())
    graphs = _graphs(directory, runtime, needed)
    encoder = (OnnxSpeechEncoder if kind == "speech" else OnnxImageEncoder)(graphs[first], runtime)
    decoder = (OnnxDecoder(graphs["decoder_init"], graphs["decoder_step"], runtime["decoder"])
               if config.decoder is not None else None)
    ctc_head = OnnxCTCHead(graphs["ctc_head"]) if config.ctc else None
    return EncoderDecoder(encoder, decoder, ctc_head, config=config).eval()


def load_exported_lm(directory: Path, meta: dict[str, Any], config: LstmLMConfig,
                     device: str | torch.device = "cpu") -> OnnxLstmLM:
    """The `OnnxLstmLM` of an exported language model of `config` (its tokenizer and lexicon: `toolkit.lm.load_lm`)."""
    _check_cpu(directory, device)
    runtime = meta["onnx"]
    if runtime.get("kind") != "lm":
        raise BundleError(f"{directory / 'config.json'}: onnx.kind {runtime.get('kind')!r} is not a language model")
    return OnnxLstmLM(_graphs(directory, runtime, ("lm_step",))["lm_step"], config).eval()
