#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. Extra arguments go to pytest.
set -euo pipefail

WZ_TMP="$(mktemp -d)"
CURRENT="set-up"
DONE=()
on_exit() {
    local rc=$?
    rm -rf "$WZ_TMP"
    if ((rc)); then
        local why=""
        ((rc == 5)) && [[ "$CURRENT" == pytest ]] && why=": no tests were collected"
        printf '\n===== FAILED: %s (exit %d%s) =====\n' "$CURRENT" "$rc" "$why" >&2
    fi
}
trap on_exit EXIT

# shellcheck source=scripts/_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$WZ_ROOT"

# Called plainly (never behind || or if) so that set -e stops at the first failing command.
step() {
    CURRENT="$1"
    shift
    printf '\n===== [%d] %s: %s =====\n' "$((${#DONE[@]} + 1))" "$CURRENT" "$*"
    local t0=$SECONDS
    "$@"
    DONE+=("$CURRENT $((SECONDS - t0))s")
}

# Installs the built wheel, not the editable tree, into a throwaway venv and checks what napari
# would see there. The venv borrows the dependencies of .venv through a .pth line: a directory
# named in a .pth file goes on sys.path, but the .pth files inside it (the editable install's
# hook to src/) are not run, so napari_wellzarr can only come from the wheel.
wheel_check() {
    local vpy="$WZ_TMP/venv/bin/python" site
    python -m build --wheel --outdir "$WZ_TMP/dist" . >"$WZ_TMP/build.log" 2>&1 \
        || { cat "$WZ_TMP/build.log"; return 1; }
    python -m venv --without-pip "$WZ_TMP/venv"
    site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
    python -c 'import sysconfig; print(sysconfig.get_path("purelib"))' >"$site/_wz_deps.pth"
    python -m pip --python "$vpy" install -q --no-deps "$WZ_TMP"/dist/*.whl
    # From $WZ_TMP so that the checkout is not on sys.path.
    (cd "$WZ_TMP" && "$vpy" -m npe2 validate napari-wellzarr)
    (cd "$WZ_TMP" && "$vpy" - "$site" "$WZ_ROOT/napari.yaml") <<'PY'
import importlib.metadata as md
import pathlib
import sys

site, root_yaml = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dist = md.distribution("napari-wellzarr")
assert pathlib.Path(dist.locate_file("")).resolve() == site.resolve(), dist.locate_file("")
eps = [ep for ep in dist.entry_points if ep.group == "napari.manifest"]
assert [(ep.name, ep.value) for ep in eps] == [("napari-wellzarr", "napari_wellzarr:napari.yaml")], eps
import napari_wellzarr

pkg = pathlib.Path(napari_wellzarr.__file__).parent
assert pkg.parent.resolve() == site.resolve(), pkg
yaml = pkg / "napari.yaml"
assert yaml.is_file() and not yaml.is_symlink(), f"{yaml} is not a regular file"
assert yaml.read_text() == root_yaml.read_text(), "wheel's napari.yaml differs from the root one"
print(f"wheel OK: {yaml}")
PY
}

step "ruff check" python -m ruff check .
step "ruff format" python -m ruff format --check .
step mypy python -m mypy
step "npe2 validate" python -m npe2 validate napari-wellzarr
step "wheel install" wheel_check
# pytest-xvfb starts the virtual screen; naming its backend turns a missing Xvfb into an error
# instead of a silent fallback to the real display or none. pytest-xdist runs one worker per
# core: most of the suite's time is spent waiting on child processes, servers and clusters.
step pytest python -m pytest --xvfb-backend=xvfb -n auto "$@"

summary="$(printf '%s, ' "${DONE[@]}")"
printf '\n===== test.sh OK: all %d steps succeeded in %ds (%s) =====\n' \
    "${#DONE[@]}" "$SECONDS" "${summary%, }"
