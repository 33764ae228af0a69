#!/usr/bin/env bash
# Synthetic shapes captioning: make the corpus, train, evaluate (i.i.d. and held-out combinations), report.
#   bash run.sh [--stage N] [--stop-stage N] [--config conf/quick.yaml] [--exp exp/quick] [--data data/shapes]
#               [--synth-args "--train 200 ..."] [--beams "1 4"] [-- KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")"
stage=0; stop_stage=3; config=conf/quick.yaml; exp=""; data=data/shapes; synth_args=""; beams="1 4"
. ../shared/parse_options.sh
exp=${exp:-exp/$(basename "$config" .yaml)}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: synthetic corpus -> $data"
  if [ -f "$data/captions_test_heldout.json" ]; then echo "  already made, skipping"; else
    toolkit synth shapes --out "$data" --seed 0 $synth_args
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: train $config -> $exp"
  if [ -f "$exp/final/config.json" ]; then echo "  already trained, skipping"; else
    resume=(); [ -d "$exp/checkpoints" ] && resume=(--resume)
    toolkit train "$config" -o "$exp" "${resume[@]}" data.train="$data/captions_train.json" \
      data.valid="$data/captions_val.json" "${overrides[@]}"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: evaluate $exp/final"
  for split in test_iid test_heldout; do
    for beam in $beams; do
      echo "== $split, beam $beam"
      toolkit evaluate --model "$exp/final" --data "$data/captions_$split.json" --beam "$beam" \
        --out "$exp/eval/${split}_beam$beam.json"
    done
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: HTML gallery with attention heatmaps"
  toolkit evaluate --model "$exp/final" --data "$data/captions_test_heldout.json" --max-images 24 \
    --report "$exp/gallery_heldout.html" --no-meteor > /dev/null
  echo "  report: $exp/gallery_heldout.html"
fi
