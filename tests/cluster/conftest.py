"""Fixtures of the cluster tests: one S3 server and one source with its clean plate per module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.cluster.servers import S3
from tests.convert.helpers import ix_set, plate_digest
from tests.remote.servers import serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

WELLS = tuple(f"{r}{c:02d}" for r in "AB" for c in range(1, 5))


@dataclass(frozen=True)
class Reference:
    """A source folder and its clean conversions to folders (in this process)."""

    src: Path
    base: Path
    _digests: dict[str, dict[str, str]] = field(default_factory=dict)

    def digest(self, name: str, ngff: str = "0.5", *, s3: bool = False) -> dict[str, str]:
        """The file digest of a clean conversion into a folder named ``name``.

        The plate document holds the plate's name (its folder's or object prefix's),
        so a plate is compared with the clean one of the same name.  ``s3``: the clean plate
        of an S3 test (``clean-s3``), the same as the folder's: a plate written to S3 has
        the whole-plate overview a folder has (the client that finishes it builds it).
        """
        from napari_wellzarr.convert.engine import convert, scan_source
        from napari_wellzarr.storage.config import StorageConfig

        key = f"{ngff}/{name}/{s3}"
        if key not in self._digests:
            plate = self.base / ("clean-s3" if s3 else "clean") / ngff / name
            config = StorageConfig(ngff_version=ngff)
            assert convert(scan_source(self.src), plate, config).complete
            self._digests[key] = plate_digest(plate)
        return self._digests[key]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """A moto S3 server (behind a gate that can be cut) with the AWS_* variables set."""
    with serving(S3()) as server:
        yield server


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Eight wells of 2 fields x 2 channels (TIFF files named like MetaXpress's)."""
    base = tmp_path_factory.mktemp("cluster-ref")
    ix_set(base / "src", np.random.default_rng(1515), wells=WELLS, shape=(96, 96))
    return Reference(base / "src", base)
