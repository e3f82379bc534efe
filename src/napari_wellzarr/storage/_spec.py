"""The on-disk keys this package writes and reads beside OME-NGFF's own: one home for each."""

from __future__ import annotations

from typing import Final

#: Our block in a plate's, well's or image's attributes (and in napari layer metadata).
WELLZARR_KEY: Final = "wellzarr"
#: OpenHCS's attributes: original file name -> ``[field, c, z(, t)]``, output paths, dims.
OPENHCS_FILENAME_MAP: Final = "openhcs_filename_map"
OPENHCS_OUTPUT_PATHS: Final = "openhcs_output_paths"
OPENHCS_DIMENSIONS: Final = "openhcs_dimensions"
#: polystore's (OpenHCS's maintained backend) per-image map and its axis description.
POLYSTORE_FILENAME_MAP: Final = "polystore_filename_map"
POLYSTORE_DIMENSIONS: Final = "polystore_dimensions"
#: The hidden file recording which wells share which on-disk layout.
LAYOUT_FILE: Final = ".wellzarr-layouts.json"
#: The plate's overview arrays (one folder per build), and their record in our block.
OVERVIEW_DIR: Final = ".wellzarr-overview"
OVERVIEW_KEY: Final = "overview"
