"""toolkit: one encoder-decoder design for image captioning and speech recognition."""

__version__ = "0.1.0"
