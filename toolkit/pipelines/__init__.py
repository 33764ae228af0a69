"""Ready-to-use pipelines around saved model bundles.

    from toolkit.pipelines import Captioner
    results = Captioner.from_pretrained("exp/captioner").caption(["cat.jpg"], beam_size=4)
    results = Transcriber.from_pretrained("exp/asr").transcribe(["talk.wav"], beam_size=4)
"""

from toolkit.pipelines.captioner import IMAGE_EXTENSIONS, CaptionResult, Captioner, expand_image_args
from toolkit.pipelines.transcriber import TranscriptResult, Transcriber

__all__ = ["IMAGE_EXTENSIONS", "CaptionResult", "Captioner", "TranscriptResult", "Transcriber", "expand_image_args"]
