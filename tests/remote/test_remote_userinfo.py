"""A URL's user info (``http://user:password@host``) never reaches an error, its causes or a log."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage.locations import open_location
from napari_wellzarr.storage.store import PlateStore
from tests.remote.conftest import copy_foreign

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from tests.remote.servers import RangeServer

SECRET = "pw-s3cr3t"


def _texts(err: BaseException) -> str:
    """Every text reachable from ``err``: its traceback print-out and each chained error."""
    out = ["".join(traceback.format_exception(err))]
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        one = todo.pop()
        if one is None or id(one) in seen:
            continue
        seen.add(id(one))
        out += [str(one), repr(one), repr(one.args), *getattr(one, "__notes__", [])]
        todo += [one.__cause__, one.__context__]
    assert len(seen) >= 2 or isinstance(err, WellZarrError)
    return "\n".join(out)


@pytest.mark.parametrize(
    ("fault", "where"),
    [
        ("403", "zarr.json"),  # the plate's document denied
        ("500", "zarr.json"),
        ("404", "zarr.json"),
        ("403", "c/"),  # a shard denied
        ("500", "c/"),
        ("garbage", "c/"),  # a damaged shard: named by well and array
        ("stall", "c/"),  # no answer: the timeout
    ],
)
def test_no_error_of_a_url_with_user_info_holds_it(
    served: RangeServer,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
    caplog: pytest.LogCaptureFixture,
    fault: str,
    where: str,
) -> None:
    pixels = make_remote_plate(served.root / "p.zarr", 24, shape=(1, 2, 1, 32, 32))
    served.faults.stall_seconds = 8
    url = served.url.replace("http://", f"http://alice:{SECRET}@") + "/p.zarr"
    well = next(iter(pixels))
    caplog.set_level(logging.DEBUG)
    store = None
    if where == "zarr.json":
        served.faults.modes["p.zarr/zarr.json"] = fault
    else:
        store = PlateStore.open(url)
        store.overview()
        served.faults.modes["/0/0/c."] = fault  # every shard of the wells' images
    with pytest.raises((WellZarrError, OSError)) as info:
        (store or PlateStore.open(url)).read_plane(well, 0, 0, 0)
    text = _texts(info.value)
    assert "127.0.0.1" in text or fault == "garbage"  # the URL is named
    assert SECRET not in text, text
    assert "alice" not in text, text
    assert SECRET not in caplog.text


def test_a_failed_range_read_scrubs_the_stores_own_error(served: RangeServer) -> None:
    """obstore's error names the request URL, user info included; ours chains it cleaned."""
    (served.root / "blob").write_bytes(bytes(range(256)) * 4)
    location = open_location(served.url.replace("http://", f"http://alice:{SECRET}@") + "/blob")
    served.faults.modes["blob"] = "403"
    with pytest.raises(WellZarrError) as info:
        location.read_ranges([(0, 10), (10, 10)], 1024)
    cause = info.value.__cause__
    assert cause is not None
    assert type(cause).__module__.startswith("obstore")  # the store's own error, kept
    assert "403" in str(cause)
    assert SECRET not in _texts(info.value)


@pytest.mark.parametrize("name", ["iohub_plate_v04", "iohub_plate_v05"])
@pytest.mark.parametrize("fault", ["403", "500"])
def test_nor_does_an_error_of_a_foreign_plate_read_through_zarr(
    served: RangeServer, name: str, fault: str
) -> None:
    """Plates not of ours are read by zarr through obstore: its errors are scrubbed too."""
    copy_foreign(name, served.root)
    url = served.url.replace("http://", f"http://alice:{SECRET}@") + f"/{name}"
    store = PlateStore.open(url)
    well = store.wells()[0]
    served.faults.modes["/0/0/"] = fault  # the chunks of the wells' first image
    with pytest.raises(WellZarrError) as info:
        store.read_plane(well, 0, 0, 0)
    text = _texts(info.value)
    assert "127.0.0.1" in text
    assert SECRET not in text, text
