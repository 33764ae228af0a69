"""The encoder-decoder contract, its components and the one way to build a model from a config."""

from toolkit.model.base import (
    BLANK_ID,
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Decoder,
    DecoderState,
    Encoder,
    EncoderDecoder,
    EncoderOutput,
    lengths_to_padding_mask,
)
from toolkit.model.ctc import CTCHead
from toolkit.model.decoder import DecoderConfig, TransformerDecoder, TransformerDecoderState
from toolkit.model.factory import ModelConfig, build_model
from toolkit.model.registry import create_encoder, list_encoders, register_encoder

__all__ = [
    "BLANK_ID", "BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID",
    "CTCHead", "Decoder", "DecoderConfig", "DecoderState", "Encoder", "EncoderDecoder", "EncoderOutput",
    "ModelConfig", "TransformerDecoder", "TransformerDecoderState", "build_model", "create_encoder", "lengths_to_padding_mask",
    "list_encoders", "register_encoder",
]
