"""Ready-to-use pipelines around saved model bundles.

    from toolkit.pipelines import Captioner
    results = Captioner.from_pretrained("exp/captioner").caption(["cat.jpg"], beam_size=4)
"""

from toolkit.pipelines.captioner import IMAGE_EXTENSIONS, CaptionResult, Captioner, expand_image_args

__all__ = ["IMAGE_EXTENSIONS", "CaptionResult", "Captioner", "expand_image_args"]
