"""Remote plates: requests and time to first screen over HTTP with latency, vs napari-ome-zarr.

    python bench/bench_remote.py            # 24, 96, 384 wells at 20 and 100 ms
    python bench/bench_remote.py --quick    # 24 and 384 wells at 100 ms

Every plate is served by the tests' Range HTTP server (``tests/remote/servers.py``) on a
free localhost port, sleeping ``latency`` before each answer; each reader opens the plate's
URL in its own process (napari-ome-zarr in its side venv, see ``_napari_open.py``), as
napari does: ``get_reader(url)(url)``, then the first screen (the coarsest level, index 0 on
every axis but y, x), then a field step (field 1).  Requests are counted at the server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _napari_open import OME, PLUGIN, coverage, first_screen, import_reader, open_layers

HERE = Path(__file__).resolve().parent
LAYOUTS = {"ours": "stacked", "standard": "per-field"}
WELL = (2, 2, 256)  # fields, channels, plane edge (uint16, 1 z)
CHILD_TIMEOUT_S = 300


# -- the measuring child (both interpreters) ------------------------------------------------


def _mark(spec: dict[str, Any], what: str) -> None:
    try:
        urllib.request.urlopen(f"{spec['server']}/__mark__/{what}", timeout=10).close()
    except urllib.error.HTTPError:
        pass  # 404: only the log line matters


def _field_step(layers: list[Any]) -> list[np.ndarray] | None:
    """The first screen of field 1, for layers with a field axis (else None)."""
    planes = []
    for data, meta, kind in layers:
        if kind != "image":
            continue
        labels = meta.get("axis_labels") or ()
        if not labels or labels[0] != "field":
            return None
        coarsest = data[-1] if isinstance(data, list | tuple) else data
        if coarsest.shape[0] < 2:
            return None
        index = (1,) + (0,) * (coarsest.ndim - 3)
        planes.append(np.asarray(coarsest[index]))
    return planes or None


def child(spec_path: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    spec = json.loads(Path(spec_path).read_text())
    get_reader = import_reader(spec["reader"])
    _mark(spec, "start")
    t0 = time.perf_counter()
    layers = open_layers(get_reader, spec["plate"])
    opened = time.perf_counter()
    planes = first_screen(layers)
    screen = time.perf_counter()
    _mark(spec, "screen")
    step = _field_step(layers)
    stepped = time.perf_counter()
    _mark(spec, "field")
    result = {
        **spec,
        "open_s": opened - t0,
        "screen_s": screen - t0,
        "field_s": (stepped - screen) if step is not None else None,
        "coverage": coverage(layers, planes, spec),
    }
    Path(spec["result"]).write_text(json.dumps(result))


# -- plates, server and runs (project venv) -------------------------------------------------


def build(folder: Path, n_wells: int, layout: str) -> Path:
    from napari_wellzarr.core import PlateStore, StorageConfig
    from napari_wellzarr.testing.synthetic import synthetic_well

    path = folder / f"{layout}-{n_wells}.ome.zarr"
    if (path / "zarr.json").is_file():
        return path
    fields, channels, size = WELL
    config = StorageConfig(plate=n_wells, fields=LAYOUTS[layout])
    data = synthetic_well(fields, channels, 1, (size, size), seed=7)
    with PlateStore.create(path, config, name=f"remote-{n_wells}") as store:
        for well in config.plate.all_wells():
            store.write_well(well, data, channels=["DAPI", "GFP"], pixel_size=0.65)
    return path


def run(python: str, spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    name = f"{spec['reader']}-{spec['layout']}-{spec['wells']}-{spec['latency_ms']}"
    spec_path = folder / f"{name}.json"
    spec = {**spec, "result": str(spec_path.with_suffix(".result.json"))}
    Path(spec["result"]).unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    try:
        done = subprocess.run(
            [python, str(HERE / "bench_remote.py"), "--child", str(spec_path)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        failure = f"exit {done.returncode}: {done.stderr.strip()[-400:]}"
    except subprocess.TimeoutExpired:
        failure = f"no result after {CHILD_TIMEOUT_S} s"
    if Path(spec["result"]).exists():
        return dict(json.loads(Path(spec["result"]).read_text()))
    return {**spec, "error": failure}


def _split(server: Any) -> dict[str, Any]:
    """Requests between the child's marks (to first screen, field step) and the round trips.

    The round trips to first screen are the longest chain of requests each sent after the
    previous one was answered (``RangeServer.critical_path``), among those answered before
    the first screen was drawn (read-ahead still in flight is not waited for).
    """
    log, times = list(server.log), [tuple(t) for t in server.times]
    marks = [i for i, (_, key, _) in enumerate(log) if key.startswith("__mark__/")]
    if len(marks) < 3:
        return {"screen": -1, "field": -1, "trips": -1, "path": []}
    drawn = times[marks[1]][0]
    among = [i for i in range(marks[0] + 1, marks[1]) if times[i][1] <= drawn]
    chain = server.critical_path(among)
    path = [log[i][1].split("/", 1)[-1] + (f" [{log[i][2]}]" if log[i][2] else "") for i in chain]
    return {
        "screen": marks[1] - marks[0] - 1,
        "field": marks[2] - marks[1] - 1,
        "trips": len(chain),
        "path": path,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(HERE.parent))
    from _napari_open import ome_zarr_python
    from tests.remote.servers import RangeServer

    sizes = (24, 384) if args.quick else (24, 96, 384)
    latencies = (0.1,) if args.quick else (0.02, 0.1)
    notes: list[str] = []
    pythons = {PLUGIN: sys.executable, OME: ome_zarr_python(notes)}
    folder = args.folder or Path(tempfile.gettempdir()) / "wellzarr-bench-remote"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with RangeServer(folder) as server:
        for latency in latencies:
            for n in sizes:
                from _contenders import GEOMETRY

                for reader, layout in ((PLUGIN, "ours"), (PLUGIN, "standard"), (OME, "standard")):
                    python = pythons[reader]
                    if python is None:
                        continue
                    plate = build(folder, n, layout)
                    server.latency = latency
                    server.reset()
                    r, c = GEOMETRY[n]
                    spec = {
                        "reader": reader,
                        "layout": layout,
                        "wells": n,
                        "latency_ms": round(latency * 1000),
                        "plate": f"{server.url}/{plate.name}",
                        "server": server.url,
                        "rows": r,
                        "columns": c,
                        "plane": [WELL[2]] * 2,
                    }
                    result = run(python, spec, folder)
                    result.update(_split(server))
                    rows.append(result)
                    print(_line(result), file=sys.stderr, flush=True)
    print(_table(rows))
    print(_targets(rows))
    for note in notes:
        print(f"note: {note}")


def _line(r: dict[str, Any]) -> str:
    head = f"{r['reader']:>16} {r['layout']:>8} {r['wells']:>4} wells {r['latency_ms']:>3} ms"
    if "error" in r:
        return f"{head}: {r['error']}"
    field = f"{r['field_s']:.2f} s" if r.get("field_s") is not None else "n/a"
    cover = f"  ({r['coverage']})" if r.get("coverage") else ""
    return (
        f"{head}: {r['screen']:>5} req in {r['trips']:>3} round trips, {r['screen_s']:6.2f} s "
        "to first screen; "
        f"field step {r['field']:>4} req, {field}{cover}"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| reader | layout | wells | latency | requests to first screen | round trips "
        "| time to first screen | field step: requests | field step: time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            out.append(
                f"| {r['reader']} | {r['layout']} | {r['wells']} | {r['latency_ms']} ms "
                f"| {r['error'][:60]} | | | | |"
            )
            continue
        field = (
            f"{r['field_s']:.2f} s" if r.get("field_s") is not None else "n/a (first field only)"
        )
        steps = r["field"] if r.get("field_s") is not None else "n/a"
        cover = " (incomplete)" if r.get("coverage") else ""
        out.append(
            f"| {r['reader']} | {r['layout']} | {r['wells']} | {r['latency_ms']} ms | "
            f"{r['screen']} | {r['trips']} | {r['screen_s']:.2f} s{cover} | {steps} | {field} |"
        )
    return "\n".join(out)


def _targets(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if "error" not in r]

    def pick(reader: str, layout: str, wells: int, latency: int) -> dict[str, Any] | None:
        for r in ok:
            key = (r["reader"], r["layout"], r["wells"], r["latency_ms"])
            if key == (reader, layout, wells, latency):
                return r
        return None

    lines = ["", "Targets (our layout):"]
    for latency in sorted({r["latency_ms"] for r in ok}):
        runs = [pick(PLUGIN, "ours", n, latency) for n in (24, 96, 384)]
        found = [r for r in runs if r is not None]
        if len(found) < 2:
            continue
        counts = [r["screen"] for r in found]
        ratio = max(counts) / max(1, min(counts))
        verdict = "met" if ratio <= 1.5 else "NOT met"
        lines.append(
            f"- requests to first screen at {latency} ms, "
            + " / ".join(f"{r['wells']}" for r in found)
            + f" wells: {' / '.join(map(str, counts))}, largest / smallest = {ratio:.2f}x "
            f"(target <= 1.5x): {verdict}"
        )
    lines.append("At 100 ms latency:")
    small, big = pick(PLUGIN, "ours", 24, 100), pick(PLUGIN, "ours", 384, 100)
    if small and big:
        verdict = "met" if big["trips"] <= 5 else "NOT met"
        lines.append(
            f"- round trips to first screen, 384 wells: {big['trips']} (target <= 5): {verdict}"
        )
        lines.append("  critical path: " + " -> ".join(big["path"]))
        verdict = "met" if big["screen_s"] <= 2 else "NOT met"
        lines.append(
            f"- time to first screen, 384 wells: {big['screen_s']:.2f} s (target <= 2 s): {verdict}"
        )
        ome = pick(OME, "standard", 384, 100)
        if ome:
            speedup = ome["screen_s"] / big["screen_s"]
            verdict = "met" if speedup >= 10 else "NOT met"
            lines.append(
                f"- vs napari-ome-zarr at 384 wells: {ome['screen_s']:.2f} s / "
                f"{big['screen_s']:.2f} s = {speedup:.1f}x faster (target >= 10x): {verdict}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
