# Sourced by demo.sh and test.sh: makes a fresh Debian machine ready, then activates .venv.
# Everything the project needs is installed from here, so nothing installed by hand is relied on.

WZ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WZ_VENV="$WZ_ROOT/.venv"
# Qt (xcb platform), vispy (GL through Mesa) and a virtual screen for headless runs.
WZ_APT_PACKAGES=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0
    libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0 libxcb-image0
    libdbus-1-3 libfontconfig1)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

wz_log() { printf '\n==> %s\n' "$*" >&2; }

wz_ensure_system_packages() {
    local p missing=()
    if ! command -v dpkg-query >/dev/null; then
        command -v Xvfb >/dev/null && return 0
        echo "error: not a Debian system and Xvfb is missing; install: ${WZ_APT_PACKAGES[*]}" >&2
        return 1
    fi
    for p in "${WZ_APT_PACKAGES[@]}"; do
        # 'dpkg -s' also succeeds for removed packages whose config files remain.
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] \
            || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    wz_log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

wz_ensure_venv() {
    local py="${PYTHON:-python3}" stamp="$WZ_VENV/.napari-wellzarr-install" want
    if ! "$WZ_VENV/bin/python" -c '' 2>/dev/null; then
        "$py" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
            || { echo "error: need Python >= 3.11 (set PYTHON=...)" >&2; return 1; }
        wz_log "creating $WZ_VENV"
        rm -rf "$WZ_VENV"
        "$py" -m venv "$WZ_VENV"
    fi
    # Reinstall when the dependencies, the interpreter or the checkout location change.
    want="$(cat "$WZ_ROOT/pyproject.toml" <("$WZ_VENV/bin/python" -VV) <(echo "$WZ_ROOT") \
        | sha256sum | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && "$WZ_VENV/bin/python" -c \
        'import importlib.metadata as m; m.distribution("napari-wellzarr")' 2>/dev/null; then
        return 0
    fi
    wz_log "pip install -e .[pyqt6,testing] into $WZ_VENV"
    rm -f "$stamp"
    "$WZ_VENV/bin/python" -m pip install -q --upgrade pip
    "$WZ_VENV/bin/python" -m pip install -q -e "${WZ_ROOT}[pyqt6,testing]"
    echo "$want" >"$stamp"
}

(
    set -euo pipefail
    # Serialise installs so that demo.sh and test.sh started together do not race.
    flock 9
    wz_ensure_system_packages
    wz_ensure_venv
) 9>"${TMPDIR:-/tmp}/napari-wellzarr-setup.lock"

export VIRTUAL_ENV="$WZ_VENV" PATH="$WZ_VENV/bin:$PATH"
unset PYTHONHOME
