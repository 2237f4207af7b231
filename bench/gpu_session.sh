#!/usr/bin/env bash
# Fused seeds and CUDA graphs on one GPU, measured in one device run of at most ~9 minutes.
#   here, once (from the project's root):  bash bench/gpu_session.sh prepare
#     packs what a GPU machine without network lacks (ray, optuna: ../shared/offline-gpu/pack)
#     and the full MNIST's four .gz files into .device/ (ignored by git; ~50 MB, carry it)
#   there (from the project's root, carry .device):  bash bench/gpu_session.sh run
#     1. gpu_fused.py: 4 solo processes against fused k = 4 and 8, each eager and with CUDA
#        graphs (2 epochs of the full training split, paper widths, batch 128)
#     2. gpu.py: a reduced paper search, --fuse-seeds 1 against --fuse-seeds 4 --cuda-graphs
#   Every part is time-boxed and writes as it goes; results and logs land in $OUT (or /tmp/gpu-out).
set -uo pipefail
case "${1:-}" in
prepare)
  set -e
  ../shared/offline-gpu/pack .device
  cp ../shared/mnist/*-ubyte.gz .device/
  du -sh .device
  ;;
run)
  out=${OUT:-/tmp/gpu-out}
  mkdir -p "$out"
  tar -xJf .device/site.tar.xz -C /tmp
  export PYTHONPATH=$PWD:/tmp/site312 PYTHONDONTWRITEBYTECODE=1
  cd bench
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1
  timeout 240 python3 gpu_fused.py --mnist-gz ../.device --ks 4,8 --epochs 2 >"$out/gpu_fused.log" 2>&1
  cp results/gpu_fused.json "$out/" 2>/dev/null
  reduced="--epochs 8 --trials 8 --seeds 4 --max-seeds 8"
  timeout 130 python3 gpu.py --mnist-gz ../.device --skip-checks --shares 0.25 --name gpu_k1 \
    --run-args "$reduced --fuse-seeds 1" >"$out/gpu_k1.log" 2>&1
  timeout 130 python3 gpu.py --mnist-gz ../.device --skip-checks --shares 0.25 --name gpu_k4_graphs \
    --run-args "$reduced --fuse-seeds 4 --cuda-graphs" >"$out/gpu_k4_graphs.log" 2>&1
  cp results/gpu_k1.json results/gpu_k4_graphs.json "$out/" 2>/dev/null
  ls -l "$out"
  ;;
*)
  echo "usage: bash bench/gpu_session.sh prepare|run" >&2
  exit 2
  ;;
esac
