#!/usr/bin/env bash
# Subtitles for a video, the whole path: make a demo video (a test pattern with held-out-voice speech at known
# times, silences, and stretches of noise and chords), subtitle it (VAD -> chunks -> batched joint CTC/attention
# search with the LM -> CTC-aligned word times -> cues), score the cues against the known times, and mux them in.
#   bash run.sh [--stage N] [--stop-stage N] [--model DIR] [--lm DIR] [--minutes 2] [--exp exp/demo]
# The speech model comes from recipes/synth_speech (bash ../synth_speech/run.sh trains it in ~15 minutes).
set -euo pipefail
cd "$(dirname "$0")"
stage=0; stop_stage=2; model=../synth_speech/exp/quick/final; lm=../synth_speech/exp/quick/lm/final
manifest=../synth_speech/data/speech/test_heldout.jsonl; minutes=2; exp=exp/demo
. ../shared/parse_options.sh
[ -f "$model/config.json" ] || { echo "run.sh: no speech model at $model: run ../synth_speech/run.sh first" >&2; exit 2; }
lm_args=(); [ -f "$lm/config.json" ] && lm_args=(--lm "$lm")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: demo video -> $exp/source/longform.mp4 (+ longform.json: the true speech times)"
  if [ -f "$exp/source/longform.mp4" ]; then echo "  already made, skipping"; else
    toolkit synth longform --manifest "$manifest" --minutes "$minutes" --video --out "$exp/source"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: subtitle it -> $exp/demo.srt, demo.vtt, demo.json; scored against the true times"
  for fmt in srt json; do
    toolkit subtitle "$exp/source/longform.mp4" --model "$model" "${lm_args[@]}" -o "$exp/demo.$fmt" --quiet
  done
  toolkit subtitle "$exp/source/longform.mp4" --model "$model" "${lm_args[@]}" -o "$exp/demo.vtt" \
    --timeline "$exp/source/longform.json"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: soft subtitle tracks -> $exp/demo.subtitled.mkv (SRT) and demo.subtitled.mp4 (mov_text)"
  command -v ffmpeg >/dev/null || { echo "run.sh: muxing needs ffmpeg: apt-get install ffmpeg" >&2; exit 2; }
  for container in mkv mp4; do
    toolkit subtitle "$exp/source/longform.mp4" --model "$model" "${lm_args[@]}" -o "$exp/demo.srt" --quiet \
      --mux "$exp/demo.subtitled.$container"
  done
  ffprobe -v error -show_entries stream=codec_type,codec_name -of csv=p=0 "$exp/demo.subtitled.mkv"
fi
