#!/bin/sh
# Install the CPU build of torch into the environment of PYTHON (make setup, the Dockerfile and
# tests/test_install.py use this). PyTorch's CPU wheel index has it for Linux, macOS and
# Windows; from the default index, Linux gets the CUDA build (several GB) instead. Where the CPU
# index cannot be reached within a few seconds (an offline mirror, a closed network), torch
# comes from the default index, as configured for pip.
#
#   scripts/install_torch.sh PYTHON              # TORCH_VERSION, TORCH_INDEX override
#   TORCH_INDEX= scripts/install_torch.sh PYTHON  # the default index only
set -eu
PY=${1:?usage: install_torch.sh PYTHON [pip options]}
shift
VERSION=${TORCH_VERSION:-2.13.0}  # the newest tested; pyproject.toml's range admits it
INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}

# A HEAD request for the project page: an unreachable index answers in milliseconds (no DNS,
# refused) or after the 5 s timeout (dropped packets), instead of pip's retries (5, with
# back-off, each up to its 180 s default timeout).
reachable() {
  "$PY" -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/torch/", method="HEAD"), timeout=5)' \
    "$INDEX" 2>/dev/null
}

if [ -n "$INDEX" ] && reachable; then
  exec "$PY" -m pip install "$@" --index-url "$INDEX" "torch==$VERSION"
fi
[ -n "$INDEX" ] && echo "install_torch: $INDEX cannot be reached; torch $VERSION from the default index" >&2
exec "$PY" -m pip install "$@" "torch==$VERSION"
