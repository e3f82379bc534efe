"""The first screen of a plate loaded on a thread, under napari's activity indicator."""

from __future__ import annotations

import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Final

from napari_wellzarr.storage.axes import PlaneKey

if TYPE_CHECKING:
    from napari_wellzarr.plugin.view import PlateView

__all__ = ["first_screen_requests", "load_first_screen", "read_first_screen", "running_viewer"]

#: The longest the window waits for the first screen (then napari reads what is missing).
WAIT_S: Final = 600.0
#: How often the window handles its events while the first screen loads.
TICK_S: Final = 0.03
#: A first screen loaded within this long shows no progress bar (making one costs ~0.1 s).
QUIET_S: Final = 0.15


def first_screen_requests(view: PlateView) -> list[tuple[str, None, PlaneKey, int]]:
    """The tiles napari draws first: every channel of every well, at the whole-plate level.

    At the first index of the field, [time,] and z sliders and at their middle (napari
    slices a new layer at the first, then moves its sliders to the middle).
    """
    level = len(view.reader.plans) - 1
    leads = {tuple(0 for _ in view.lead_shape), tuple(n // 2 for n in view.lead_shape)}
    out = []
    for lead in sorted(leads):
        for c in range(view.info.n_channels):
            if len(lead) == 3:
                key = PlaneKey(lead[0], c, lead[2], lead[1])
            else:
                key = PlaneKey(lead[0], c, lead[-1])
            out += [(well, None, key, level) for well in view.reader.wells]
    return out


def read_first_screen(view: PlateView, requests: list[tuple[str, None, PlaneKey, int]]) -> None:
    """Read ``requests`` into the cache: as whole-plate planes when the overview serves them."""
    level = len(view.reader.plans) - 1
    keys = sorted({key for _, _, key, _ in requests})
    if view.reader.overview is not None and all(
        view.reader.overview_mosaic(key, level) is not None for key in keys
    ):
        return
    view.reader.tiles(requests, report=False)


def running_viewer() -> Any:
    """Napari's current viewer when napari is imported and has one, else None."""
    napari = sys.modules.get("napari")
    return napari.current_viewer() if napari is not None else None


def load_first_screen(view: PlateView) -> bool:
    """Read the first screen into the tile cache while napari's window stays live.

    Only in a running napari (a Qt application with a viewer): the reads run on a thread while the
    window handles its events and, after :data:`QUIET_S`, napari's activity dock shows an
    indeterminate progress bar.  Returns whether it loaded (False without a Qt application).
    """
    qt = sys.modules.get("qtpy.QtWidgets")
    app = qt.QApplication.instance() if qt is not None else None
    if app is None or running_viewer() is None:
        return False
    from napari.utils import progress

    requests = first_screen_requests(view)
    with ThreadPoolExecutor(1, thread_name_prefix="wellzarr-first-screen") as pool:
        # Damaged wells are reported by napari's own reads, on its thread.
        future = pool.submit(read_first_screen, view, requests)
        start = time.monotonic()
        deadline = start + WAIT_S
        while not future.done() and time.monotonic() < start + QUIET_S:
            app.processEvents()
            wait([future], timeout=TICK_S)
        if not future.done():
            desc = f"napari-wellzarr: loading {view.path}"
            with progress(total=0, desc=desc, file=io.StringIO()) as bar:  # the dock
                while not future.done() and time.monotonic() < deadline:
                    app.processEvents()
                    bar.refresh()
                    wait([future], timeout=TICK_S)
        future.result(timeout=max(0.0, deadline - time.monotonic()))
    return True
