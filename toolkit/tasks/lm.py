"""Language modelling as a task: an LM for shallow fusion, trained on text alone with a speech model's tokenizer.

    exp = load_config(LmExperiment, "recipes/synth_speech/conf/lm.yaml", ["tokenizer_from=exp/quick/final"])
    result = train_lm(exp, Path("exp/lm"))                 # bundles in exp/lm/best and exp/lm/final (info.task "lm")
    ids, skipped = encode_sentences(tokenizer, texts, max_length=400)    # token ids of the usable sentences
    nll, tokens = lm_nll(lm, make_sentence_loader(ids, 4096, train=False))   # perplexity: exp(nll / tokens)

Text: files of one sentence per line (UTF-8), normalised as transcripts are for training and scoring
(`toolkit.text.normalize_text`), duplicates dropped, then `data.valid_size` sentences drawn at random (seed
`train.seed`) are held out for validation (perplexity per token, EOS included). A sentence is BOS + tokens + EOS;
sentences with a character (token) the tokenizer does not know, or longer than `data.max_length` tokens, are
skipped and counted: an LM that learnt <unk> would only reward it. Batches are sentences of similar length, padded,
with at most `data.max_batch_tokens` tokens (padding included).

Lexicon: every bundle also lists the words the LM knows (lexicon.txt, `toolkit.lm.lexicon`), for the search's
OOV penalty: the words of the text, plus those of the word lists `data.lexicon` (e.g. /usr/share/dict/words),
normalised the same way; words the tokenizer cannot spell without <unk> are left out.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from toolkit.data.padding import pad_sequences
from toolkit.data.speech_dataset import BucketBatchSampler
from toolkit.errors import ToolkitError
from toolkit.lm import Lexicon, LstmLM, LstmLMConfig, save_lm
from toolkit.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, load_tokenizer, normalize_text
from toolkit.train import TrainConfig, Trainer, TrainResult
from toolkit.train.distributed import World, join_process_group

log = logging.getLogger("toolkit.lm")


@dataclass
class LmDataConfig:
    """text: text files, one sentence per line; lexicon: word lists (one word per line) whose words join the
    text's in the bundle's lexicon; the other fields: see the module docstring."""

    text: list[str]
    valid_size: int = 500
    max_batch_tokens: int = 4096
    max_length: int = 400
    lexicon: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("text: give at least one text file")
        if self.valid_size < 1 or self.max_length < 1:
            raise ValueError("valid_size and max_length must be at least 1")
        if self.max_batch_tokens < self.max_length + 2:
            raise ValueError(f"max_batch_tokens {self.max_batch_tokens} must hold one sentence of max_length "
                             f"{self.max_length} + BOS/EOS")


@dataclass
class LmExperiment:
    """Everything a language-model run needs; a recipe's YAML is exactly this. tokenizer_from: the speech model
    bundle (or a tokenizer directory) whose tokenizer the LM must share to be fused with it."""

    data: LmDataConfig
    train: TrainConfig
    tokenizer_from: str
    model: LstmLMConfig = field(default_factory=LstmLMConfig)
    task: Literal["lm"] = "lm"


def read_sentences(paths: Sequence[str | Path]) -> list[str]:
    """The normalised, non-empty lines of the text files `paths`, duplicates dropped (first occurrence kept)."""
    seen: dict[str, None] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ToolkitError(f"{path}: text file not found") from None
        except IsADirectoryError:
            raise ToolkitError(f"{path}: is a directory, not a text file (one sentence per line)") from None
        except UnicodeDecodeError as e:
            raise ToolkitError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise ToolkitError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from None
        for line in text.splitlines():
            sentence = normalize_text(line)
            if sentence:
                seen.setdefault(sentence, None)
    return list(seen)


def make_lexicon(tokenizer: Tokenizer, sentences: Sequence[str], word_lists: Sequence[str | Path] = ()) -> Lexicon:
    """The words of `sentences` and of the word-list files `word_lists` (normalised like transcripts) that
    `tokenizer` spells without <unk>."""
    words = {w for sentence in sentences for w in sentence.split()}
    words.update(w for line in read_sentences(word_lists) for w in line.split())
    spelt = [w for w in words if UNK_ID not in tokenizer.encode(w)]
    if len(spelt) < len(words):
        log.info("lexicon: %d of %d words left out (characters the tokenizer does not know)", len(words) - len(spelt),
                 len(words))
    return Lexicon(spelt)


def encode_sentences(tokenizer: Tokenizer, sentences: Sequence[str], max_length: int) -> tuple[list[Tensor], int]:
    """Token ids `(L,)` of each usable sentence (no unknown token, 1..max_length tokens) and how many were not."""
    encoded, skipped = [], 0
    for sentence in sentences:
        ids = tokenizer.encode(sentence)
        if not ids or len(ids) > max_length or UNK_ID in ids:
            skipped += 1
        else:
            encoded.append(torch.tensor(ids, dtype=torch.long))
    return encoded, skipped


class SentenceDataset(Dataset):
    """Token sequences; item i is `{"tokens": (L,)}` (BOS and EOS are added by `collate_sentences`)."""

    def __init__(self, sentences: list[Tensor]):
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, i: int) -> Tensor:
        return self.sentences[i]


def collate_sentences(items: list[Tensor]) -> dict[str, Tensor]:
    """inputs `(B, L+1)` = BOS + tokens and targets `(B, L+1)` = tokens + EOS, both padded with PAD_ID (which the
    loss ignores)."""
    inputs, _ = pad_sequences([F.pad(t, (1, 0), value=BOS_ID) for t in items], PAD_ID, torch.long)
    targets, _ = pad_sequences([F.pad(t, (0, 1), value=EOS_ID) for t in items], PAD_ID, torch.long)
    return {"inputs": inputs, "targets": targets}


def make_sentence_loader(sentences: list[Tensor], max_batch_tokens: int, train: bool, seed: int = 0,
                         num_replicas: int = 1, rank: int = 0) -> DataLoader:
    """Batches of sentences of similar length, at most `max_batch_tokens` padded tokens each (BOS/EOS counted),
    in a new order every epoch when `train` (`loader.batch_sampler.set_epoch`)."""
    sampler = BucketBatchSampler([len(t) + 1 for t in sentences], max_batch_tokens, shuffle=train, seed=seed,
                                 num_replicas=num_replicas, rank=rank)
    return DataLoader(SentenceDataset(sentences), batch_sampler=sampler, collate_fn=collate_sentences)


def lm_loss(lm: LstmLM, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cross entropy per target token (EOS included, padding not), computed in float32."""
    logits = lm(batch["inputs"])
    return {"loss": F.cross_entropy(logits.float().flatten(0, 1), batch["targets"].flatten(), ignore_index=PAD_ID)}


@torch.no_grad()
def lm_nll(lm: LstmLM, loader: DataLoader) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of the sentences of `loader` and their number of predicted tokens."""
    device = next(lm.parameters()).device
    total, count = 0.0, 0
    for batch in loader:
        logits = lm(batch["inputs"].to(device))
        targets = batch["targets"].to(device)
        total += float(F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD_ID,
                                       reduction="sum"))
        count += int((targets != PAD_ID).sum())
    return total, count


def train_lm(exp: LmExperiment, out_dir: Path, resume: bool = False) -> TrainResult:
    """Train a language model on `exp.data.text` with the tokenizer of `exp.tokenizer_from`; bundles land in
    `out_dir/best` and `out_dir/final`. Under torchrun every process trains on its share of the batches."""
    with join_process_group() as world:
        return _train_lm(exp, Path(out_dir), resume, world)


def _train_lm(exp: LmExperiment, out_dir: Path, resume: bool, world: World) -> TrainResult:
    d = exp.data
    tokenizer = load_tokenizer(Path(exp.tokenizer_from))
    sentences = read_sentences(d.text)
    encoded, skipped = encode_sentences(tokenizer, sentences, d.max_length)
    if skipped:
        log.warning("%d of %d sentences are skipped: characters the tokenizer does not know, or longer than %d "
                    "tokens", skipped, len(sentences), d.max_length)
    if len(encoded) <= d.valid_size:
        raise ToolkitError(f"{', '.join(d.text)}: {len(encoded)} usable sentences, not more than data.valid_size "
                           f"({d.valid_size}): nothing would be left to train on")
    order = list(range(len(encoded)))
    random.Random(exp.train.seed).shuffle(order)
    valid = [encoded[i] for i in order[: d.valid_size]]
    train = [encoded[i] for i in order[d.valid_size :]]
    log.info("%d training sentences (%d tokens), %d held out for validation", len(train),
             sum(len(t) + 1 for t in train), len(valid))

    model = LstmLM(replace(exp.model, vocab_size=tokenizer.vocab_size))
    loader = make_sentence_loader(train, d.max_batch_tokens, train=True, seed=exp.train.seed,
                                  num_replicas=world.size, rank=world.rank)
    valid_loader = make_sentence_loader(valid, d.max_batch_tokens, train=False)
    lexicon = make_lexicon(tokenizer, sentences, d.lexicon)
    info = {"tokenizer_from": exp.tokenizer_from, "text": list(d.text), "train_sentences": len(train),
            "lexicon": list(d.lexicon), "lexicon_words": len(lexicon)}

    def validate_fn(lm: LstmLM) -> dict[str, float]:
        nll, tokens = lm_nll(lm, valid_loader)
        return {"loss": nll / tokens, "ppl": math.exp(nll / tokens)}

    def save_fn(lm: LstmLM, path: Path, extra: dict) -> None:
        save_lm(path, lm, tokenizer, info={**info, **extra}, lexicon=lexicon)

    trainer = Trainer(model, exp.train, out_dir, loader, lm_loss, validate_fn, save_fn,
                      batch_size_fn=lambda b: b["inputs"].size(0), device=world.device)
    return trainer.fit(resume=resume)
