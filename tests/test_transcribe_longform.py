"""`Transcriber.transcribe` and `toolkit transcribe` on input of any length: the voice activity gate (no words from
silence, noise or tones), long input cut into chunks as `Subtitler` cuts it, segments with times, batching.

The recogniser is a tiny untrained model. Where a test needs words, its search is replaced by a fixed transcript
per chunk (`fixed_transcript`), so the tests check what is decoded and where, not recognition quality; the
quality and scaling figures come from tests/benchmarks/longform_scale.py with a trained model.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli import main
from toolkit.media import VadConfig
from toolkit.pipelines import transcriber as transcriber_module
from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler
from toolkit.pipelines.transcriber import Transcriber

from test_subtitler import bundle, recording, utterances  # noqa: F401 - shared fixtures: a tiny bundle, speech

SR = 16000
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture
def fixed_transcript(monkeypatch):
    """Every chunk 'decodes' to "one two three" (the search is the only part replaced); the calls are recorded."""
    calls: list[list[int]] = []
    real = Transcriber.decode_batch

    def decode_batch(self, waves, options, lm=None, ctc_only=False, return_encoder=False):
        calls.append([len(w) for w in waves])
        ids = self.tokenizer.encode("one two three")
        scored = [(list(ids), -1.0) for _ in waves]
        if not return_encoder:
            return scored
        _, enc_out = real(self, waves, options, lm, ctc_only=True, return_encoder=True)
        return scored, enc_out

    monkeypatch.setattr(Transcriber, "decode_batch", decode_batch)
    return calls


def non_speech(kind: str, seconds: float = 30.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "white":  # -34 dBFS RMS
        return (10 ** (-34 / 20) * rng.standard_normal(n)).astype(np.float32)
    if kind == "pink":  # 1/f power: white noise shaped in the frequency domain, -30 dBFS RMS
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        x = np.fft.irfft(spectrum, n)
        return (10 ** (-30 / 20) * x / x.std()).astype(np.float32)
    if kind == "tone":  # a steady 440 Hz at -12 dBFS
        return (0.25 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["silence", "white", "pink", "tone"])
def test_non_speech_gives_an_empty_transcript(bundle, tmp_path, fixed_transcript, capsys, kind):
    path = tmp_path / f"{kind}.wav"
    sf.write(path, non_speech(kind), SR)
    transcriber = Transcriber.from_pretrained(bundle)
    [result] = transcriber.transcribe([path])
    assert (result.text, result.segments, fixed_transcript) == ("", [], [])  # nothing reached the recogniser
    assert result.duration == pytest.approx(30.0)
    # the gate is what makes it empty: without it the (replaced) search would have spoken
    assert transcriber.transcribe([path], vad=None)[0].text == "one two three"
    assert main(["transcribe", str(path), "--model", str(bundle), "--json", "--quiet"]) == 0
    [printed] = json.loads(capsys.readouterr().out)
    assert (printed["text"], printed["segments"], printed["audio"]) == ("", [], str(path))


def test_short_speech_is_one_segment_from_its_first_speech_to_its_last(bundle, utterances, fixed_transcript,
                                                                       caplog):
    speech, _ = sf.read(utterances[0].audio, dtype="float32")
    wave = np.concatenate([np.zeros(3 * SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    transcriber = Transcriber.from_pretrained(bundle)
    with caplog.at_level(logging.WARNING):
        results = transcriber.transcribe([wave, np.zeros(SR, np.float32)], word_times=True)
    [segment] = results[0].segments
    assert results[0].text == segment.text == "one two three"
    sound = np.flatnonzero(np.abs(speech) > 0.01) / SR  # espeak-ng's file has silence of its own at the end
    assert abs(segment.start - (3.0 + sound[0])) <= 0.15 and abs(segment.end - (3.0 + sound[-1])) <= 0.15
    assert [w.text for w in segment.words] == ["one", "two", "three"]
    assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
    [[decoded]] = fixed_transcript  # one call, one input: the speech and its padding, not the silences around it
    assert abs(decoded / SR - (sound[-1] - sound[0] + 0.4)) <= 0.3
    assert results[1].text == "" and "1 input holds no speech" in caplog.text and "audio[1]" in caplog.text


def test_long_input_is_streamed_in_chunks_like_subtitles(bundle, recording, fixed_transcript, monkeypatch):
    wav, timeline = recording
    monkeypatch.setattr(transcriber_module, "load_audio", lambda *a, **k: pytest.fail("a long file was loaded whole"))
    transcriber = Transcriber.from_pretrained(bundle)
    [result] = transcriber.transcribe([wav], max_chunk=6.0, word_times=True, batch_size=2)
    assert max(len(call) for call in fixed_transcript) <= 2  # batch_size
    sub = Subtitler(transcriber, SubtitleOptions(max_chunk=6.0)).subtitle(wav)
    segments = result.segments
    assert len(segments) == len(sub.chunks) >= 4 and all(s.end - s.start <= 6.0 + 1e-6 for s in segments)
    assert all(c.start <= s.start < s.end <= c.end for s, c in zip(segments, sub.chunks))  # the same chunks
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))  # in time order
    assert result.text == " ".join(["one two three"] * len(segments))
    assert result.score == pytest.approx(-1.0 * len(segments))
    assert [w for s in segments for w in s.words] == sub.words  # the same timed words as the subtitles
    speech = [u for u in timeline if u.kind == "speech"]
    for s in segments:  # each starts and ends with an utterance (whose file ends in ~0.3 s of espeak-ng's silence)
        assert any(abs(s.start - u.start) <= 0.4 for u in speech) and any(-0.6 <= s.end - u.end <= 0.4 for u in speech)
    assert all(any(s.start - 0.4 <= u.start and u.end <= s.end + 0.6 for s in segments) for u in speech)


def test_cli_json_gives_segments_and_word_times(bundle, recording, fixed_transcript, capsys):
    wav, _ = recording
    assert main(["transcribe", str(wav), "--model", str(bundle), "--json", "--word-times", "--max-chunk", "6",
                 "--quiet"]) == 0
    [out] = json.loads(capsys.readouterr().out)
    assert out["audio"] == str(wav) and out["duration"] == pytest.approx(sf.info(wav).duration, abs=1e-3)
    assert [s["id"] for s in out["segments"]] == list(range(len(out["segments"])))
    assert out["text"] == " ".join(s["text"] for s in out["segments"])
    for s in out["segments"]:
        assert set(s) == {"id", "start", "end", "text", "score", "words"} and s["start"] < s["end"]
        assert [w["word"] for w in s["words"]] == ["one", "two", "three"]
    assert main(["transcribe", str(wav), "--model", str(bundle), "--json", "--quiet"]) == 0
    assert all("words" not in s for s in json.loads(capsys.readouterr().out)[0]["segments"])


def test_batched_mixed_lengths_equal_one_by_one_in_input_order(bundle, utterances, recording):
    """The real (untrained) search: batching and sorting by length change nothing, and results keep input order."""
    transcriber = Transcriber.from_pretrained(bundle)
    inputs = [utterances[2].audio, recording[0], utterances[0].audio, utterances[3].audio]
    together = transcriber.transcribe(inputs, beam_size=2, batch_size=3, max_chunk=8.0)
    alone = [transcriber.transcribe([x], beam_size=2, batch_size=1, max_chunk=8.0)[0] for x in inputs]
    assert [r.source for r in together] == [str(x) for x in inputs]
    for a, b in zip(together, alone):
        assert (a.text, a.tokens) == (b.text, b.tokens) and a.score == pytest.approx(b.score, abs=1e-3)
        assert [(s.start, s.end) for s in a.segments] == [(s.start, s.end) for s in b.segments]


def test_energy_and_no_vad_options(bundle, recording, fixed_transcript, capsys):
    wav, _ = recording
    energy = Transcriber.from_pretrained(bundle).transcribe([wav], vad=VadConfig(backend="energy"), max_chunk=6.0)
    assert energy[0].segments
    assert main(["transcribe", str(wav), "--model", str(bundle), "--vad", "none", "--json", "--quiet"]) == 0
    [whole] = json.loads(capsys.readouterr().out)
    assert [(s["start"], s["text"]) for s in whole["segments"]] == [(0.0, "one two three")]
    assert whole["segments"][0]["end"] == pytest.approx(sf.info(wav).duration, abs=1e-3)
