#!/usr/bin/env bash
# Measure the latency tables that ship in profiles/ for a teacher on this host (ONNX Runtime CPU):
# one and two threads on the whole machine, and one thread as a device with 60% and 35% of a core
# (paced, as `cofc bench --emulate` runs it; the shipped cpu-60/cpu-35 tables predate pacing and were
# measured under a cgroup quota). Run on a quiet machine: anything else running skews the timings.
#   bash tools/capture_profiles.sh examples/teachers/vit_fashion_mnist.pt vit-fmnist
set -euo pipefail
teacher=$1 tag=$2
cofc=${COFC:-.venv/bin/cofc}
$cofc profile --teacher "$teacher" --threads 1 --device host-ort-1t --out "profiles/host-ort-1t.$tag.json"
$cofc profile --teacher "$teacher" --threads 2 --device host-ort-2t --out "profiles/host-ort-2t.$tag.json"
$cofc profile --teacher "$teacher" --threads 1 --cpu-share 0.60 --device cpu-60 --out "profiles/cpu-60.$tag.json"
$cofc profile --teacher "$teacher" --threads 1 --cpu-share 0.35 --device cpu-35 --out "profiles/cpu-35.$tag.json"
