#!/usr/bin/env bash
# The exact commands that made every shipped checkpoint, on a 2-core CPU (no GPU).
# One torch thread per run: two runs side by side beat one run fighting over both cores.
# Usage: bash scripts/train_shipped.sh [name ...]   (default: all, in this order)
# GENLIB_DRY_RUN=1 prints each command, shell-quoted, instead of running it (tests/test_shipped_recipes.py reads them).
# Each run scores itself with the evaluator at the end (metrics.json). After retraining the
# evaluator, re-score the others with: python -m genlib eval NAME --write
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { echo "== $1"; shift; if [ -n "${GENLIB_DRY_RUN:-}" ]; then printf '%q ' "$@"; echo; else time "$@"; fi; }
want() { [ ${#ALL[@]} -eq 0 ] || [[ " ${ALL[*]} " == *" $1 "* ]]; }
ALL=("$@")
want digit-classifier && run digit-classifier python -m genlib train-evaluator --out checkpoints/digit-classifier --epochs 40
want vae-mnist    && run vae-mnist    python -m genlib train vae  --out checkpoints/vae-mnist    --epochs 150 --kl-warmup-steps 1000 --ema-decay 0.999 --prior-components 20
# The 2-D VAE for the manifold grid: 350 epochs at beta 0.2 (553 s) draw its rarest digit, the 4, at 7.30% of 10,000
# samples; 100 epochs at beta 0.3 drew it at 4.25% (the README lists the runs between).
want vae-2d-mnist && run vae-2d-mnist python -m genlib train vae  --out checkpoints/vae-2d-mnist --latent-dim 2 --hidden 128 --epochs 350 --kl-warmup-steps 1000 --ema-decay 0.999 --prior-components 20 --beta 0.2
# The VAE on the 8-bit likelihood panel: a discretized-logistic decoder over the 256 grey levels (smaller fc layer).
want vae-logistic-mnist && run vae-logistic-mnist python -m genlib train vae --out checkpoints/vae-logistic-mnist --loss logistic --hidden 128 --epochs 150 --kl-warmup-steps 1000 --ema-decay 0.999 --prior-components 20
want cvae-mnist   && run cvae-mnist   python -m genlib train cvae --out checkpoints/cvae-mnist   --epochs 150 --kl-warmup-steps 1000 --ema-decay 0.999 --prior-components 3
want ae-mnist     && run ae-mnist     python -m genlib train ae   --out checkpoints/ae-mnist     --epochs 100 --ema-decay 0.999 --prior-components 20
want dae-mnist    && run dae-mnist    python -m genlib train dae  --out checkpoints/dae-mnist    --epochs 100 --noise-std 0.5 --ema-decay 0.999 --prior-components 20
want mlp-gan-mnist && run mlp-gan-mnist python -m genlib train mlp-gan --out checkpoints/mlp-gan-mnist --loss hinge --spectral-norm --ema-decay 0.999 --lr 2e-4 --batch-size 64 --epochs 500 --max-steps 28000 --preview-every 2000
want dcgan-mnist   && run dcgan-mnist   python -m genlib train dcgan   --out checkpoints/dcgan-mnist --g-width 64 --d-width 64 --g-convs 1 --loss lsgan --augment --minibatch-std --ema-decay 0.995 --lr 6e-4 --batch-size 64 --epochs 60 --max-steps 3000 --preview-every 1000
want cgan-mnist    && run cgan-mnist    python -m genlib train cgan    --out checkpoints/cgan-mnist --loss hinge --spectral-norm --g-width 64 --d-width 64 --g-convs 1 --augment --ema-decay 0.999 --lr 2e-4 --batch-size 64 --epochs 80 --max-steps 4000 --preview-every 500
# Normalizing flows, by exact maximum likelihood on the dequantized 8-bit digits (each under 30 min on one core).
FLOW_FLAGS=(--batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 200 --grad-clip 5 --epochs 200 --preview-every 1000)
# Glow: batch 16 with bf16 autocast (the 1x1 convolution stays exact) and a logit margin of 0.01 won the
# equal-time pilots in benchmarks/equal_time.md. Alone on both cores, 24,000 steps in 1,723 s reach 1.265 bits/dim
# (30,000 steps reach 1.253 but took 1,826 s, over the 30-minute budget; margin 0.05, 30,000 steps: 1.339 in 1,707 s).
want glow-mnist    && OMP_NUM_THREADS=2 run glow-mnist python -m genlib train glow --out checkpoints/glow-mnist --hidden 64 --steps 8 \
  --logit-alpha 0.01 "${FLOW_FLAGS[@]}" --batch-size 16 --max-steps 24000 --preview-every 5000 --cpu-bf16
# RealNVP and NICE take Glow's margin 0.01 too: 1.666 -> 1.486 bits/dim (RealNVP, 3,600 fp32 steps on one thread,
# 1,601 s) and 3.823 -> 2.806 (NICE, 60,000 steps, 700 s). RealNVP then ran alone on both cores with bf16 autocast,
# 0.16 s a step: 8,000 steps in 1,288 s reach 1.410 bits/dim, FD 1,183 -> 1,025, its rarest digit 4.79% -> 6.22%.
want realnvp-mnist && OMP_NUM_THREADS=2 run realnvp-mnist python -m genlib train realnvp --out checkpoints/realnvp-mnist --hidden 64 --steps 3 \
  --logit-alpha 0.01 "${FLOW_FLAGS[@]}" --max-steps 8000 --cpu-bf16
want nice-mnist    && run nice-mnist    python -m genlib train nice    --out checkpoints/nice-mnist    --hidden 64 --logit-alpha 0.01 \
  "${FLOW_FLAGS[@]}" --epochs 1000 --max-steps 60000 --preview-every 5000
# Autoregressive models, exact likelihoods: the Gated PixelCNN on binarized digits (binarized afresh each batch) and on
# 8-bit ones (a 256-way softmax), and the Row-LSTM PixelRNN on binarized digits (each under 30 min on one core).
AR_FLAGS=(--batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 100 --grad-clip 5 --epochs 100 --preview-every 500)
# The binarized PixelCNN runs alone on both cores with bf16 autocast (AMX here): 5,000 steps of batch 32 in 1,670 s,
# 87.56 nats; the recipe before it (1,000 steps of batch 64 in fp32 on one thread, 2,060 s) reached 93.55.
want pixelcnn-mnist      && OMP_NUM_THREADS=2 run pixelcnn-mnist python -m genlib train pixelcnn --out checkpoints/pixelcnn-mnist \
  --data binarized --channels 48 --layers 8 --kernel 3 "${AR_FLAGS[@]}" --batch-size 32 --max-steps 5000 --preview-every 1000 --cpu-bf16
want pixelcnn-8bit-mnist && run pixelcnn-8bit-mnist python -m genlib train pixelcnn --out checkpoints/pixelcnn-8bit-mnist --data 8-bit --channels 32 --layers 8 --kernel 3 --max-steps 600 "${AR_FLAGS[@]}"
want pixelrnn-mnist      && run pixelrnn-mnist      python -m genlib train pixelrnn --out checkpoints/pixelrnn-mnist      --data binarized --channels 32 --layers 2 --max-steps 3000 "${AR_FLAGS[@]}"
# The RBM: 500 hidden units and CD-25, the published reference's setting; AIS (14,500 temperatures, 100 runs) at the end.
want rbm-mnist && run rbm-mnist python -m genlib train rbm --out checkpoints/rbm-mnist --hidden 500 --cd-steps 25 --batch-size 64 --lr 0.05 --epochs 100 --preview-every 1000
# Diffusion, then the steps-vs-quality curve that the Diffusion page shows at once (steps_quality.json in the folder).
DIFFUSION_FLAGS=(--snr-gamma 5 --batch-size 64 --lr 1e-3 --grad-clip 1 --ema-decay 0.995 --epochs 100 --sample-steps 20 --sampler dpm-solver++
  --max-steps 4500 --preview-every 500 --cpu-bf16)
# Both run alone on both cores with bf16 autocast (AMX here), 0.28-0.32 s a step instead of fp32's 0.50, so 4,500 steps
# fit their 30 minutes against the 1,800 fp32 steps on one thread before (about 24 min; benchmarks/diffusion_speed.md).
# Unconditional (1,452 s): FD 347.0 -> 156.2 and its rarest digit 6.97% -> 8.75% over 10,000 samples.
# Conditional (1,640 s): FD 156.0 -> 141.6, class accuracy 0.991 -> 1.000.
want diffusion-mnist  && OMP_NUM_THREADS=2 run diffusion-mnist python -m genlib train diffusion --out checkpoints/diffusion-mnist "${DIFFUSION_FLAGS[@]}"
want cdiffusion-mnist && OMP_NUM_THREADS=2 run cdiffusion-mnist python -m genlib train cdiffusion --out checkpoints/cdiffusion-mnist "${DIFFUSION_FLAGS[@]}"
# Photo restoration: trained on 48x48 crops of the bundled training photos (genlib.data), never the held-out ones;
# metrics.json holds their held-out PSNR (the Restore page and benchmarks/restoration.md compare the rest).
# The denoiser is the residual U-Net: the 12-layer DnCNN (dncnn, still trainable) scored 29.24/27.72/25.61 dB at
# sigma 15/25/50 on the same budget, this one 31.88/29.67/27.30. Stored as float16 (held-out PSNR unchanged to 1e-4 dB).
want resunet-photos && run resunet-photos python -m genlib train resunet --out checkpoints/resunet-photos --width 32 \
  --blocks 2 --epochs 100 --batch-size 32 --lr 5e-4 --lr-schedule cosine --max-steps 4500 --preview-every 500 --seed 0
want resunet-photos && run "resunet-photos float16" python -m genlib half checkpoints/resunet-photos
for s in 2 4; do
  want "espcn-x$s-photos" && run "espcn-x$s-photos" python -m genlib train espcn --out "checkpoints/espcn-x$s-photos" \
    --scale "$s" --width 64 --epochs 200 --batch-size 32 --lr 1e-3 --max-steps 6000 --preview-every 1000 --seed 0
done
# Transformers, each timed with two torch threads on an otherwise idle CPU (the README gives the times).
# The GPT: the recipe benchmarks/transformers.md compares with nanoGPT's at the same wall time; float16 after.
want gpt-pydoc && OMP_NUM_THREADS=2 run gpt-pydoc python -m genlib train gpt --out checkpoints/gpt-pydoc \
  --block-size 256 --dropout 0.1 --batch-size 8 --lr 3e-3 --lr-schedule cosine --warmup-steps 100 --grad-clip 1 --cpu-bf16 --epochs 1000 --max-steps 5000 --preview-every 1000 --seed 0
want gpt-pydoc && run "gpt-pydoc float16" python -m genlib half checkpoints/gpt-pydoc
# The ViT on the digits (its recipe is train-vit's default), and the small BERT pretrained by masked-language
# modelling on the corpus and the built-in set's unlabelled train texts, then fine-tuned on that set (recorded
# in its metrics.json beside the TF-IDF baseline).
want vit-digits && OMP_NUM_THREADS=2 run vit-digits python -m genlib train-vit --out checkpoints/vit-digits
want bert-mini-pydoc && OMP_NUM_THREADS=2 run bert-mini-pydoc python -m genlib pretrain-encoder \
  --out checkpoints/bert-mini-pydoc --also-docstrings --steps 8000 --max-minutes 25
want bert-mini-pydoc && run "bert-mini-pydoc float16" python -m genlib half checkpoints/bert-mini-pydoc
want bert-mini-pydoc && OMP_NUM_THREADS=2 run "bert-mini-pydoc fine-tune" python -m genlib finetune \
  checkpoints/bert-mini-pydoc --out runs/bert-mini-pydoc-stdlib-docs --record
# Shipped weights as float16 (half the size; the scores do not move: vae-mnist FD 605.01 -> 605.02,
# diffusion-mnist 156.20 -> 156.47), then the diffusion steps-vs-quality curve on those weights, every
# shipped model's full scorecard and the reference rows, which Compare reads instead of scoring.
GENLIB_LAYOUT=(ae-mnist dae-mnist vae-mnist vae-logistic-mnist vae-2d-mnist cvae-mnist mlp-gan-mnist dcgan-mnist cgan-mnist)
for name in "${GENLIB_LAYOUT[@]}" glow-mnist realnvp-mnist nice-mnist pixelcnn-mnist pixelcnn-8bit-mnist pixelrnn-mnist rbm-mnist diffusion-mnist cdiffusion-mnist; do
  want "$name" && run "$name float16" python -m genlib half "$name"
done
# The RBM's log Z is re-estimated by AIS for the float16 weights it ships with, so -log p(v) = F(v) + log Z stays consistent.
want rbm-mnist && run "rbm-mnist log Z" python -m genlib rbm-ais rbm-mnist --write
for name in diffusion-mnist; do  # cdiffusion-mnist: computed on demand (guidance doubles the cost)
  want "$name" && run "$name curve" python -m genlib steps-quality "$name" --num 250 --steps 5 10 20 50 100 --write
done
want digit-classifier && run "reference rows" python -m genlib references --write
for name in "${GENLIB_LAYOUT[@]}" glow-mnist realnvp-mnist nice-mnist pixelcnn-mnist pixelcnn-8bit-mnist pixelrnn-mnist rbm-mnist diffusion-mnist cdiffusion-mnist; do
  want "$name" && run "$name scorecard" python -m genlib eval "$name" --write
done
echo "== done"
