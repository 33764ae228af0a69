#!/usr/bin/env bash
# LibriSpeech in its standard layout: BPE tokens, Conformer CTC/attention, WER on dev/test clean and other.
#   bash run.sh --data /data/LibriSpeech [--stage N] [--stop-stage N] [--config conf/conformer_bpe.yaml]
#               [--exp DIR] [--train-subsets "train-clean-100 ..."] [-- KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")"
stage=1; stop_stage=2; config=conf/conformer_bpe.yaml; exp=""; data=""; train_subsets=""
test_sets="dev-clean dev-other test-clean test-other"
. ../shared/parse_options.sh
[ -n "$data" ] || { echo "run.sh: --data (the LibriSpeech folder holding train-clean-100/, dev-clean/, ...) is required" >&2; exit 2; }
exp=${exp:-exp/$(basename "$config" .yaml)}
subsets=()
[ -n "$train_subsets" ] && subsets=("data.train_subsets=[${train_subsets// /, }]")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: train $config -> $exp"
  if [ -f "$exp/final/config.json" ]; then echo "  already trained, skipping"; else
    resume=(); [ -d "$exp/checkpoints" ] && resume=(--resume)
    toolkit train "$config" -o "$exp" "${resume[@]}" data.train="$data" data.valid="$data" "${subsets[@]}" \
      "${overrides[@]}"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: WER on $test_sets"
  for set in $test_sets; do
    echo "== $set"
    toolkit evaluate --model "$exp/final" --data "$data" --splits "$set" --out "$exp/eval/$set.json"
  done
fi
