"""Ship a trained model: ONNX export (`export_onnx`, `toolkit export`) and the onnxruntime twins of the toolkit's
networks that load an exported folder (`toolkit.export.runtime`, reached through `toolkit.bundle.load_model` and
`toolkit.lm.load_lm`)."""

from toolkit.export.onnx_export import QUANTIZE, export_onnx

__all__ = ["QUANTIZE", "export_onnx"]
