"""Virtual environments for contenders that must not be installed into the project's venv.

polystore pins its own stack; napari-ome-zarr would become a second napari reader for
plates in the project's tests.  Each gets a venv under the repository root (``.venv-*``,
git-ignored), built the first time a benchmark needs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


def contender_python(
    venv: Path,
    requirement: str,
    probe: str,
    notes: list[str],
    *,
    extra: tuple[str, ...] = (),
    borrow: bool = False,
) -> str | None:
    """The interpreter of ``venv`` with ``requirement`` (``name==version``), built on first use.

    ``probe`` is Python code that imports the contender and prints its version.  With
    ``borrow``, the venv sees the project venv's packages (see :func:`_build`) and only
    the contender itself is installed.  Returns ``None``, with a line in ``notes``, when
    the venv cannot be built or cannot import the contender: the benchmark goes on
    without it.
    """
    name, _, version = requirement.partition("==")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {requirement} ...", file=sys.stderr, flush=True)
        try:
            _build(venv, [requirement, *extra], borrow)
        except (OSError, subprocess.CalledProcessError) as err:
            shutil.rmtree(venv, ignore_errors=True)  # half-built: retry next run
            notes.append(f"{name} skipped: could not build {venv} ({err})")
            return None
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        notes.append(f"{name} skipped: {venv} cannot import it: {done.stderr[-300:]}")
        return None
    if version and done.stdout.strip() != version:
        notes.append(f"{name} venv has version {done.stdout.strip()}, not {version}")
    return str(python)


def _build(venv: Path, packages: list[str], borrow: bool) -> None:
    if not borrow:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
        return
    # A directory named in a .pth file goes on sys.path after the venv's own packages, so
    # the contender sees the project venv's napari, zarr and dask without a second copy;
    # the .pth files inside that directory (the editable install's hook to src/) are not
    # run, so napari_wellzarr is not importable there.  --no-deps: pip must not install
    # anything else into this venv (the probe shows whether the borrowed packages do).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", _PURELIB], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "_project_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", *packages],
        check=True,
    )
