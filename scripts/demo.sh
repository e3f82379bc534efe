#!/usr/bin/env bash
# The main job: build a small sample plate (and, with napari, show it and save a screenshot).
set -euo pipefail
# shellcheck source=scripts/_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# Bare `demo.sh` rebuilds its own demo-output/ each run; with arguments the caller decides.
(($#)) || set -- --overwrite
if [[ -n "${DISPLAY:-}" ]]; then
    exec python -m napari_wellzarr.demo "$@"
fi
# No screen (CI, ssh): napari draws on a virtual one, through Mesa's software GL.
exec xvfb-run -a python -m napari_wellzarr.demo "$@"
