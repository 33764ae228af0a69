#!/usr/bin/env bash
# Synthetic speech recognition: synthesise the corpus (espeak-ng / flite voices), train a Conformer
# CTC/attention model, evaluate WER/CER on seen and held-out voices.
#   bash run.sh [--stage N] [--stop-stage N] [--config conf/quick.yaml] [--exp DIR] [-- KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")"
stage=0; stop_stage=2; config=conf/quick.yaml; exp=""
. ../shared/parse_options.sh
exp=${exp:-exp/$(basename "$config" .yaml)}
data=data/speech

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: synthetic speech corpus -> $data"
  command -v espeak-ng >/dev/null || { echo "run.sh: espeak-ng not found: install it with apt-get install espeak-ng flite fortunes wordnet-base" >&2; exit 2; }
  toolkit synth speech --out "$data" --seed 0     # finished splits are reused
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: train $config -> $exp"
  if [ -f "$exp/final/config.json" ]; then echo "  already trained, skipping"; else
    resume=(); [ -d "$exp/checkpoints" ] && resume=(--resume)
    toolkit train "$config" -o "$exp" "${resume[@]}" "${overrides[@]}"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: evaluate $exp/final (joint CTC/attention beam search)"
  for split in test_seen test_heldout; do
    echo "== $split"
    toolkit evaluate --model "$exp/final" --data "$data/$split.jsonl" --out "$exp/eval/$split.json"
  done
fi
