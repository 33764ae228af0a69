#!/usr/bin/env bash
# COCO captioning with a pretrained timm CNN: frozen backbone first, then the whole network fine-tuned.
#   bash run.sh --coco-root DIR --captions FILE --weights FILE [--stage N] [--stop-stage N] [--exp DIR]
#               [-- KEY=VALUE ...]     (overrides applied to both training stages)
# --captions: Karpathy's dataset_coco.json (splits train/restval/val/test) or a COCO captions JSON;
# --coco-root: the folder the image paths are relative to (holding train2014/ and val2014/);
# --weights: the backbone's pretrained weights as a local file (.safetensors / .pth), never downloaded.
set -euo pipefail
cd "$(dirname "$0")"
stage=1; stop_stage=4; exp=exp/resnet50; coco_root=""; captions=""; weights=""
. ../shared/parse_options.sh
[ -n "$captions" ] && [ -n "$coco_root" ] || { echo "run.sh: --captions and --coco-root are required" >&2; exit 2; }
data=(data.train="$captions" data.valid="$captions" data.image_root="$coco_root")
# Karpathy files carry splits; a plain COCO captions file does not (then train and valid are the same file
# unless overridden).
if ! python -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if 'sentences' in d['images'][0] else 1)" "$captions"; then
  data+=(data.train_splits=null data.valid_splits=null)
fi
test_split=(--splits test)
[[ " ${data[*]} " == *"train_splits=null"* ]] && test_split=()

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: frozen backbone -> $exp/frozen"
  [ -n "$weights" ] || { echo "run.sh: stage 1 needs --weights (a local file of the backbone's weights)" >&2; exit 2; }
  if [ -f "$exp/frozen/final/config.json" ]; then echo "  already trained, skipping"; else
    resume=(); [ -d "$exp/frozen/checkpoints" ] && resume=(--resume)
    toolkit train conf/frozen.yaml -o "$exp/frozen" "${resume[@]}" "${data[@]}" \
      model.encoder.pretrained_file="$weights" "${overrides[@]}"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: whole network fine-tuned -> $exp/finetune"
  if [ -f "$exp/finetune/final/config.json" ]; then echo "  already trained, skipping"; else
    resume=(); [ -d "$exp/finetune/checkpoints" ] && resume=(--resume)
    toolkit train conf/finetune.yaml -o "$exp/finetune" "${resume[@]}" "${data[@]}" \
      init_from="$exp/frozen/final" "${overrides[@]}"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: evaluate on the test split"
  for model in frozen finetune; do
    echo "== $model, beam 3"
    toolkit evaluate --model "$exp/$model/final" --data "$captions" --image-root "$coco_root" "${test_split[@]}" \
      --beam 3 --length-penalty 0.6 --out "$exp/eval/${model}_test_beam3.json"
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "stage 4: HTML gallery with attention heatmaps"
  toolkit evaluate --model "$exp/finetune/final" --data "$captions" --image-root "$coco_root" "${test_split[@]}" \
    --max-images 24 --beam 3 --report "$exp/gallery_test.html" --no-meteor > /dev/null
  echo "  report: $exp/gallery_test.html"
fi
