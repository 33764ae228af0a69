"""Ready-to-use pipelines around saved model bundles.

    from toolkit.pipelines import Captioner, Subtitler, Transcriber
    results = Captioner.from_pretrained("exp/captioner").caption(["cat.jpg"], beam_size=4)
    results = Transcriber.from_pretrained("exp/asr").transcribe(["talk.wav"], beam_size=4)
    result = Subtitler.from_pretrained("exp/asr").subtitle("talk.mkv")      # result.cues, result.words
"""

from toolkit.pipelines.captioner import IMAGE_EXTENSIONS, CaptionResult, Captioner, expand_image_args
from toolkit.pipelines.subtitler import SubtitleOptions, SubtitleResult, Subtitler
from toolkit.pipelines.transcriber import TranscriptResult, Transcriber

__all__ = ["IMAGE_EXTENSIONS", "CaptionResult", "Captioner", "SubtitleOptions", "SubtitleResult", "Subtitler",
           "TranscriptResult", "Transcriber", "expand_image_args"]
