#!/usr/bin/env bash
# Every GPU measurement of the project in one script, sized for one lent GPU (about 8 minutes on
# an H200): the training-step and inference benchmarks (scratchdet/benchmark/, beside
# torchvision's SSD and the synthetic-tensor step), then the proof of learning on real photos:
# scratchdet300 and dsod300 trained from scratch with their papers' lr and the device input
# pipeline on a fixed split of the kangaroo photos, each for TRAIN_SECONDS, stopped by SIGTERM
# (the run saves a snapshot and exits, engine/preemption.py), then every snapshot scored on the
# held-out photos next to the image-blind baseline (scratchdet curve, scratchdet eval --baseline).
#
#   OUT=/path/to/results KANGAROO=gpu_data/kangaroo bash benchmarks/gpu.sh
#
# Results go under $OUT: train_cuda.json, train_cuda_compile.json, infer_cuda.json,
# matching_cuda.json, postprocess_cuda.json, train-step_cuda.json
# (benchmarks/README.md explains them; `scratchdet benchmark table` renders them)
# and proof/gpu/ (curves as CSV + PNG, baseline, split files, run configs and provenance).
# The environment can shrink it for a CPU rehearsal (tests/test_gpu_script.py):
# DEVICE=cpu COMPILE=0 WORKERS=0 BATCH=2 BATCHES=2 INFER_BATCHES=1 TRAIN_SECONDS=20 BENCH_MODELS=dsod300_smallest
# MODELS='tiny 0.05 {name: dsod300_smallest}' (COMPONENTS=0, or STEP_MODELS=dsod300_smallest
# STEP_BATCH=2, for the component part).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
KANGAROO=${KANGAROO:-gpu_data/kangaroo}
DEVICE=${DEVICE:-cuda}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-8}
BENCH=${BENCH:-1}
COMPONENTS=${COMPONENTS:-1}  # matching, postprocess, the whole train step (eager + compiled)
STEP_MODELS=${STEP_MODELS:-"scratchdet300 dsod300"}
STEP_BATCH=${STEP_BATCH:-32}
COMPILE=${COMPILE:-1}  # torch.compile benchmarks (minutes of compiling on a CPU: 0 there)
BENCH_MODELS=${BENCH_MODELS:-"scratchdet300 dsod300 ssd300_vgg16_bn"}
BATCHES=${BATCHES:-"32 128"}
INFER_BATCHES=${INFER_BATCHES:-"1 32"}
# One line per proof run: a label, its paper's base lr (ScratchDet: 0.05; DSOD: 0.1), the model.
MODELS=${MODELS:-"scratchdet300 0.05 {name: scratchdet300}
dsod300 0.1 {name: dsod300}"}
scratchdet() { python -m scratchdet.cli "$@"; }
mkdir -p "$OUT/proof/gpu"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.csv" 2>&1 || true

if [ "$BENCH" = 1 ]; then
    # Training img/s: synthetic tensors, device pipeline, CPU pipeline, torchvision's SSD on the
    # same backbone; then the same with torch.compile. Inference FPS with NMS at batch 1 and 32.
    # Each benchmark also runs one step under torch.cuda.set_sync_debug_mode (the sync count).
    # shellcheck disable=SC2086
    scratchdet benchmark train --models $BENCH_MODELS --batch-sizes $BATCHES --steps 15 \
        --warmup 10 --repeats 3 --workers "$WORKERS" \
        --modes synthetic device_augment cpu_augment torchvision \
        --device "$DEVICE" --out "$OUT/train_cuda.json"
    if [ "$COMPILE" = 1 ]; then
        # shellcheck disable=SC2086
        scratchdet benchmark train --models $BENCH_MODELS --batch-sizes $BATCHES --steps 15 \
            --warmup 15 --repeats 3 --workers "$WORKERS" --modes synthetic device_augment \
            --compile --device "$DEVICE" --out "$OUT/train_cuda_compile.json"
    fi
    # shellcheck disable=SC2086
    scratchdet benchmark infer --models $BENCH_MODELS --batch-sizes $INFER_BATCHES --device "$DEVICE" \
        --out "$OUT/infer_cuda.json"
fi

if [ "$COMPONENTS" = 1 ]; then
    # Component benchmarks against torchvision (benchmarks/README.md's schema): matching and
    # post-processing on the device, then the whole training step, eager and (COMPILE=1)
    # compiled with CUDA graphs (train.compile: mode reduce-overhead), beside torchvision's SSD
    # on the same backbone and batch. The compiled step has never run on a GPU before this.
    scratchdet benchmark matching --device "$DEVICE" --out "$OUT/matching_cuda.json"
    scratchdet benchmark postprocess --device "$DEVICE" --out "$OUT/postprocess_cuda.json"
    compile_flag=""
    [ "$COMPILE" = 1 ] && compile_flag="--compile"
    # shellcheck disable=SC2086
    scratchdet benchmark train-step --device "$DEVICE" --models $STEP_MODELS \
        --batch-size "$STEP_BATCH" --steps 10 --warmup 3 --repeats 5 $compile_flag \
        --out "$OUT/train-step_cuda.json"
fi

proof="$OUT/proof/gpu"
scratchdet data voc --annotations "$KANGAROO/annots" --images "$KANGAROO/images" --drop-broken \
    --out "$proof/kangaroo.json"
scratchdet data split --data "$proof/kangaroo.json" --test 33 --seed 0 \
    --train-out "$proof/train.json" --test-out "$proof/test.json"
scratchdet eval --baseline image-blind --train "$proof/train.json" --gt "$proof/test.json" \
    --out "$proof/image_blind.json"

printf '%s\n' "$MODELS" | while read -r model lr spec; do
    [ -n "$model" ] || continue
    run="$proof/$model"
    cat > "$proof/$model.yaml" <<YAML
seed: 0
model: $spec
data: {train: $proof/train.json, test: $proof/test.json, augment: ssd, pipeline: auto, num_workers: $WORKERS}
train: {device: $DEVICE, batch_size: $BATCH, lr: $lr, warmup_steps: 100, max_steps: 3000,
        milestones: [2400], checkpoint_every: 150, keep_checkpoints: 30, log_every: 25}
YAML
    # The run stops itself at TRAIN_SECONDS: SIGTERM makes it save a snapshot and exit (143).
    code=0
    timeout -s TERM "$TRAIN_SECONDS" python -m scratchdet.cli train --config "$proof/$model.yaml" \
        --out "$run" > "$proof/$model.train.log" 2>&1 || code=$?
    if [ "$code" != 0 ] && [ "$code" != 124 ] && [ "$code" != 143 ]; then
        echo "training $model failed with $code" >&2; tail -20 "$proof/$model.train.log" >&2; exit 1
    fi
    scratchdet curve --run "$run" --data "$proof/test.json" --out "$proof/${model}_curve.csv" \
        --figure "$proof/${model}_curve.png" --title "$model, kangaroo, $DEVICE" \
        --device "$DEVICE" --workers "$WORKERS"
    # Checkpoints stay on the device machine: the curves, logs and provenance come back.
    rm -rf "$run/checkpoints" "$run"/model_*.pt
done
echo "done: $(ls "$OUT" "$proof" | tr '\n' ' ')"
