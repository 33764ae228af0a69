#!/usr/bin/env bash
# Synthetic speech recognition: synthesise the corpus (espeak-ng, flite, MBROLA, Pico, Piper and Festival voices), train
# a Conformer CTC/attention model, evaluate WER/CER on seen, held-out and unseen voices; then train a language model on
# the corpus's text-only sentences (lm_text.txt) with the speech model's tokenizer and evaluate again with it fused in.
#   bash run.sh [--stage N] [--stop-stage N] [--config conf/quick.yaml] [--exp DIR] [--lm-config conf/lm.yaml]
#               [--lm-weight W] [--data data/speech] [--synth-args "--train 500 ..."] [--lm-args "K=V ..."]
#               [--lm-beside true|false] [--beam 4] [--threads N] [-- KEY=VALUE ...]
# --synth-args: options of `toolkit synth speech` (split sizes); --lm-args: KEY=VALUE overrides of the LM config.
# --beam: the beam of stages 2 and 4 (the full config's results use 12, chosen on valid: README).
# --threads: torch threads of stage 1's speech model (default: every core, half of them with the LM beside); 1 for a
#   config whose loader worker augments on the fly (conf/medium.yaml) on a 2-core machine.
# --lm-weight: for a speech model whose bundle records no decoding.lm_weight (models trained before it existed).
# --lm-beside true (the default): stage 1 trains the LM (stage 3's work) beside the speech model, each process on
#   half the CPU threads, as soon as the speech model's tokenizer exists; on 2 cores the speech model keeps ~70% of its
#   two-thread speed and the LM gets all of its time. false: stage 3 trains it after, with every thread.
set -euo pipefail
cd "$(dirname "$0")"
stage=0; stop_stage=4; config=conf/quick.yaml; exp=""; lm_config=conf/lm.yaml; lm_weight=""; data=data/speech; beam=4
synth_args=""; lm_args=""; lm_beside=true; threads=""
. ../shared/parse_options.sh
exp=${exp:-exp/$(basename "$config" .yaml)}

eval_splits() {  # the test splits of $data: test_unseen only in corpora made since it exists
  echo test_seen test_heldout; [ -f "$data/test_unseen.jsonl" ] && echo test_unseen; true
}

train_lm() {  # stage 3's work: the LM on lm_text.txt, with the speech model's tokenizer ($1: a bundle or tokenizer dir)
  if [ -f "$exp/lm/final/config.json" ]; then echo "  already trained, skipping"; return; fi
  [ -f "$data/lm_text.txt" ] || {
    echo "run.sh: $data/lm_text.txt is missing (a corpus made before it existed): run stage 0 again, it keeps" \
         "the audio and writes it" >&2; return 2; }
  local resume=(); [ -d "$exp/lm/checkpoints" ] && resume=(--resume)
  toolkit train "$lm_config" -o "$exp/lm" "${resume[@]}" tokenizer_from="$1" "data.text=[$data/lm_text.txt]" $lm_args
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: synthetic speech corpus -> $data"
  command -v espeak-ng >/dev/null || { echo "run.sh: espeak-ng not found: install it with apt-get install espeak-ng flite fortunes wordnet-base" >&2; exit 2; }
  # the other engines are optional: one a machine lacks is named (with how to install it) and its voices skipped
  toolkit synth speech --out "$data" --seed 0 $synth_args    # finished splits are reused
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: train $config -> $exp"
  if [ -f "$exp/final/config.json" ]; then echo "  already trained, skipping"; else
    cores=$(nproc); lm_pid=""
    if [ "$lm_beside" = true ] && [ "$stop_stage" -ge 3 ] && [ ! -f "$exp/lm/final/config.json" ] && [ "$cores" -ge 2 ]; then
      cores=$((cores / 2))
      echo "  and the LM beside it (stage 3's work), $cores thread(s) each -> $exp/lm (log: $exp/lm.log)"
      mkdir -p "$exp"
      (  # the speech model's tokenizer is written as its training starts
        until [ -f "$exp/tokenizer/tokenizer.json" ]; do sleep 1; done
        OMP_NUM_THREADS=$cores train_lm "$exp/tokenizer" > "$exp/lm.log" 2>&1
      ) &
      lm_pid=$!
      trap 'if [ -n "$lm_pid" ]; then pkill -P "$lm_pid" 2>/dev/null; kill "$lm_pid" 2>/dev/null; fi' EXIT
    fi
    resume=(); [ -d "$exp/checkpoints" ] && resume=(--resume)
    OMP_NUM_THREADS=${threads:-$cores} toolkit train "$config" -o "$exp" "${resume[@]}" data.train="$data/train.jsonl" \
      data.valid="$data/valid.jsonl" "${overrides[@]}"
    if [ -n "$lm_pid" ]; then
      echo "  waiting for the LM ($exp/lm.log)"
      wait "$lm_pid" || { echo "run.sh: the LM failed, see $exp/lm.log" >&2; tail -n 5 "$exp/lm.log" >&2; exit 2; }
      lm_pid=""; tail -n 2 "$exp/lm.log"
    fi
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: evaluate $exp/final (joint CTC/attention beam search, beam $beam)"
  for split in $(eval_splits); do
    echo "== $split"
    toolkit evaluate --model "$exp/final" --data "$data/$split.jsonl" --beam "$beam" --out "$exp/eval/$split.json"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: train the LM on $data/lm_text.txt with the tokenizer of $exp/final -> $exp/lm"
  train_lm "$exp/final"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "stage 4: evaluate $exp/final with the LM $exp/lm/final fused into the search"
  weight=(); [ -n "$lm_weight" ] && weight=(--lm-weight "$lm_weight")
  for split in $(eval_splits); do
    echo "== $split"
    toolkit evaluate --model "$exp/final" --data "$data/$split.jsonl" --beam "$beam" --lm "$exp/lm/final" "${weight[@]}" \
      --out "$exp/eval/lm_$split.json"
  done
fi
