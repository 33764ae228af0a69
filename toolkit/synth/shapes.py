"""A synthetic captioning corpus: 1-3 coloured shapes per image, captions with attributes and relations.

Every image holds one to three objects, each a (size, colour, shape) triple drawn on a plain background with
jittered colours and positions. Captions name every object ("a large red circle") and, for two objects, their
spatial relation along the dominant axis ("left of", "right of", "above", "below"); three objects are listed
left to right. Each image carries several paraphrases as separate references.

Splits (written as COCO captions JSON, `captions_<split>.json`, plus PNG files under `images/`):
    train, val, test_iid  - objects drawn from the training combinations
    test_heldout          - every image holds at least one colour-shape pair that training never shows
                            (each colour and each shape is still seen in training, with other partners)

The same seed gives the same corpus, file for file.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (45, 85, 220),
    "yellow": (235, 205, 35), "purple": (140, 60, 175), "orange": (245, 135, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "hexagon")
SIZES = {"small": (0.075, 0.095), "large": (0.14, 0.17)}  # radius as a fraction of the image side
HELD_OUT_PAIRS = frozenset(
    {("red", "triangle"), ("blue", "circle"), ("green", "diamond"), ("yellow", "square"), ("purple", "hexagon")}
)
SPLITS = ("train", "val", "test_iid", "test_heldout")


@dataclass(frozen=True)
class ShapeObject:
    size: str
    colour: str
    shape: str
    x: float  # centre, in pixels
    y: float
    r: float  # radius, in pixels

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


def captions_for(objects: list[ShapeObject]) -> list[str]:
    """Paraphrases describing `objects` (listed left to right for three)."""
    if len(objects) == 1:
        (a,) = objects
        return [a.phrase, f"there is {a.phrase}", f"{a.phrase} on its own"]
    if len(objects) == 2:
        a, b = objects
        dx, dy = b.x - a.x, b.y - a.y
        if abs(dx) >= abs(dy):
            first, second = (a, b) if dx > 0 else (b, a)
            rel, inverse = "left of", "right of"
        else:
            first, second = (a, b) if dy > 0 else (b, a)
            rel, inverse = "above", "below"
        return [
            f"{first.phrase} {rel} {second.phrase}",
            f"{second.phrase} {inverse} {first.phrase}",
            f"there is {first.phrase} {rel} {second.phrase}",
        ]
    a, b, c = sorted(objects, key=lambda o: o.x)
    return [
        f"{a.phrase}, {b.phrase} and {c.phrase}",
        f"from left to right {a.phrase}, {b.phrase} and {c.phrase}",
        f"{a.phrase} left of {b.phrase} and {c.phrase}",
    ]


def draw(objects: list[ShapeObject], size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(200, 240) for _ in range(3))
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    for o in objects:
        fill = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[o.colour])
        x, y, r = o.x, o.y, o.r
        if o.shape == "circle":
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif o.shape == "square":
            s = r * 0.88
            d.rectangle([x - s, y - s, x + s, y + s], fill=fill)
        elif o.shape == "triangle":
            d.polygon([(x, y - r), (x - r, y + r * 0.8), (x + r, y + r * 0.8)], fill=fill)
        elif o.shape == "diamond":
            d.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
        else:  # hexagon
            d.polygon([(x + r * math.cos(a), y + r * math.sin(a)) for a in (k * math.pi / 3 for k in range(6))],
                      fill=fill)
    return img


def sample_objects(rng: random.Random, pairs: list[tuple[str, str]], n: int, size: int) -> list[ShapeObject]:
    """`n` non-overlapping objects with colour-shape pairs from `pairs`, placed so relations are unambiguous:
    two objects differ clearly along one axis; three have clearly separated x positions."""
    while True:
        objects = []
        for colour, shape in rng.sample(pairs, n) if n <= len(pairs) else [rng.choice(pairs) for _ in range(n)]:
            size_name = rng.choice(list(SIZES))
            lo, hi = SIZES[size_name]
            r = rng.uniform(lo, hi) * size
            objects.append(ShapeObject(size_name, colour, shape, rng.uniform(r + 1, size - r - 1),
                                       rng.uniform(r + 1, size - r - 1), r))
        if _well_placed(objects, size):
            return objects


def _well_placed(objects: list[ShapeObject], size: int) -> bool:
    for a, b in itertools.combinations(objects, 2):
        if math.hypot(a.x - b.x, a.y - b.y) < a.r + b.r + 0.04 * size:
            return False
    if len(objects) == 2:
        dx, dy = abs(objects[0].x - objects[1].x), abs(objects[0].y - objects[1].y)
        return max(dx, dy) > 1.6 * min(dx, dy)
    if len(objects) == 3:
        xs = sorted(o.x for o in objects)
        return min(xs[1] - xs[0], xs[2] - xs[1]) > 0.12 * size
    return True


@dataclass
class ShapesConfig:
    """Sizes of the corpus; `image_size` is the side of the square PNG files."""

    train: int = 6000
    val: int = 300
    test_iid: int = 500
    test_heldout: int = 500
    image_size: int = 128
    max_objects: int = 3
    seed: int = 0


def make_shapes_corpus(out_dir: str | Path, config: ShapesConfig = ShapesConfig(), progress: bool = True) -> dict:
    """Write the corpus under `out_dir`; returns {split: path of its COCO captions JSON}."""
    from tqdm import tqdm

    from toolkit.data.captions import CaptionRecord, write_coco

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    all_pairs = list(itertools.product(COLOURS, SHAPES))
    seen = [p for p in all_pairs if p not in HELD_OUT_PAIRS]
    held = sorted(HELD_OUT_PAIRS)
    paths = {}
    for split_index, split in enumerate(SPLITS):
        rng = random.Random(config.seed * 1000 + split_index)
        records = []
        count = getattr(config, split)
        for i in tqdm(range(count), desc=f"shapes {split}", disable=not progress, unit="img"):
            n = rng.randint(1, config.max_objects)
            if split == "test_heldout":  # one held-out pair, the rest from anywhere
                objects = sample_objects(rng, held, 1, config.image_size)
                if n > 1:
                    while True:
                        rest = sample_objects(rng, all_pairs, n - 1, config.image_size)
                        if _well_placed(objects + rest, config.image_size):
                            objects = objects + rest
                            break
                rng.shuffle(objects)
            else:
                objects = sample_objects(rng, seen, n, config.image_size)
            name = f"{split}_{i:06d}.png"
            draw(objects, config.image_size, rng).save(out_dir / "images" / name)
            records.append(CaptionRecord(str(out_dir / "images" / name), captions_for(objects), str(i), split))
        paths[split] = out_dir / f"captions_{split}.json"
        write_coco(records, paths[split], image_root=out_dir)
    return paths
