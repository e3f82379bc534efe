"""Hypothesis strategies for plates, well names, file names, configurations and OME documents.

Imports Hypothesis: import it only from tests (``napari_wellzarr.testing.strategies``).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.geometry import PlateGeometry, Well, row_letters
from napari_wellzarr.storage.metadata import PlateMeta, PlateWell

__all__ = [
    "DELETE",
    "PIXEL_DTYPES",
    "STORAGE_OPTIONS",
    "any_well_texts",
    "array_document_mutations",
    "array_dtype_names",
    "axis_entries",
    "channel_indices",
    "columns_1536",
    "extents",
    "field_indices",
    "file_names",
    "geometry_and_well",
    "hostile_file_names",
    "image_blocks",
    "imagexpress_names",
    "json_scalars",
    "json_values",
    "loose_json_scalars",
    "loose_json_values",
    "near_values",
    "near_well_names",
    "ngff_versions",
    "node_indices",
    "node_names",
    "opera_names",
    "or_json",
    "plane_coordinates",
    "plate_blocks",
    "plate_formats",
    "plate_geometries",
    "plate_metas",
    "regex_atoms",
    "rows_1536",
    "small_ints",
    "small_plates",
    "storage_config_kwargs",
    "user_patterns",
]

#: The OME-NGFF versions the project reads and writes.
ngff_versions = st.sampled_from(["0.4", "0.5"])

# -- JSON values ------------------------------------------------------------------------------

#: JSON scalars as a strict parser returns them: null, booleans, integers within 2**40,
#: finite floats and short strings.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
#: Small JSON documents (lists and objects of :data:`json_scalars`, up to 12 leaves).
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
#: JSON scalars as Python's ``json`` accepts them: also NaN, infinities and integers
#: past 64 bits.
loose_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
)
#: Small documents of :data:`loose_json_scalars` (up to 6 leaves).
loose_json_values = st.recursive(
    loose_json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)

# -- OME metadata blocks, hostile -------------------------------------------------------------

#: Row, column, well and dataset names: sometimes fine ("A", "01") and sometimes hostile
#: ("..", "/etc", "a/b"), or not a string at all.
node_names = st.one_of(
    st.sampled_from(["A", "B", "AA", "01", "1", "12", "0", "s0", "..", ".", "/etc", "a/b", ""]),
    st.text(max_size=5),
    json_values,
)
#: Row and column indices: small integers (some negative) or any JSON value.
node_indices = st.one_of(st.integers(-2, 40), json_values)


def or_json(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``values``, or any of :data:`json_values` in their place."""
    return st.one_of(values, json_values)


#: OME ``plate`` blocks whose every field may be of the wrong kind.
plate_blocks = st.fixed_dictionaries(
    {
        "rows": or_json(st.lists(st.fixed_dictionaries({"name": node_names}), max_size=4)),
        "columns": or_json(st.lists(st.fixed_dictionaries({"name": node_names}), max_size=4)),
        "wells": or_json(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "path": st.one_of(
                            st.builds(lambda r, c: f"{r}/{c}", node_names, node_names), node_names
                        ),
                        "rowIndex": node_indices,
                        "columnIndex": node_indices,
                    }
                ),
                max_size=4,
            )
        ),
    },
    optional={"name": node_names, "field_count": node_indices, "acquisitions": json_values},
)
#: Entries of a ``multiscales`` ``axes`` list: 0.4/0.5 dictionaries or 0.3 axis letters.
axis_entries = st.fixed_dictionaries(
    {"name": node_names}, optional={"type": node_names, "unit": node_names}
) | st.sampled_from(["t", "c", "z", "y", "x"])
#: ``multiscales`` entries whose every field may be of the wrong kind.
image_blocks = st.fixed_dictionaries(
    {
        "axes": or_json(st.lists(axis_entries, max_size=6)),
        "datasets": or_json(
            st.lists(
                st.fixed_dictionaries(
                    {"path": node_names},
                    optional={
                        "coordinateTransformations": or_json(
                            st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "type": st.sampled_from(["scale", "translation", "x"]),
                                        "scale": or_json(st.lists(json_scalars, max_size=6)),
                                        "translation": or_json(st.lists(json_scalars, max_size=6)),
                                    }
                                ),
                                max_size=2,
                            )
                        )
                    },
                ),
                max_size=3,
            )
        ),
    },
    optional={"name": node_names},
)

# -- OME metadata, valid ----------------------------------------------------------------------


@st.composite
def plate_metas(draw: st.DrawFn) -> PlateMeta:
    """Valid plate blocks: up to 40 x 60 wells, up to 20 of them listed, in order."""
    rows, columns = draw(st.integers(1, 40)), draw(st.integers(1, 60))
    wells = draw(
        st.lists(
            st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1)),
            unique=True,
            max_size=20,
        )
    )
    geometry = PlateGeometry(rows, columns)
    entries = [
        PlateWell(f"{geometry.row_names[r]}/{geometry.column_names[c]}", r, c)
        for r, c in sorted(wells)
    ]
    return PlateMeta(geometry.row_names, geometry.column_names, tuple(entries), name="p")


# -- plate geometries and well names ----------------------------------------------------------

#: Row indices of a 1536-well plate (0 = ``A`` to 31 = ``AF``).
rows_1536 = st.integers(0, 31)
#: Column indices of a 1536-well plate (0 = ``01`` to 47 = ``48``).
columns_1536 = st.integers(0, 47)
#: Field indices as instruments number them in file names (0 to 99).
field_indices = st.integers(0, 99)
#: Channel indices as instruments number them in file names (0 to 8).
channel_indices = st.integers(0, 8)
#: Valid plate geometries: 1 to 702 rows (``A`` to ``ZZ``), 1 to 400 columns.
plate_geometries = st.builds(PlateGeometry, st.integers(1, 26 * 27), st.integers(1, 400))


@st.composite
def geometry_and_well(draw: st.DrawFn) -> tuple[PlateGeometry, Well]:
    """A plate geometry from :data:`plate_geometries` and a well on that plate."""
    plate = draw(plate_geometries)
    return plate, Well(
        draw(st.integers(0, plate.rows - 1)), draw(st.integers(0, plate.columns - 1))
    )


#: Strings close to well names: padding, other letters (Greek, accents), separators,
#: negative or non-ASCII digits, trailing NUL.
near_well_names = st.builds(
    lambda pre, row, sep, col, post: f"{pre}{row}{sep}{col}{post}",
    st.sampled_from(["", " ", "\t", "r", "R", "\u00a0", "  "]),
    st.text("ABCXYZabcz\u00c4\u0391", min_size=0, max_size=3),
    st.sampled_from(["", "/", "_", "-", " ", "c", "C", "//", "\\", ".", " / "]),
    st.one_of(
        st.integers(-5, 100_000).map(str),
        st.text("0123456789\u0661\u00b2\u2167", min_size=0, max_size=6),
    ),
    st.sampled_from(["", " ", "\n", "x", "\x00", "  "]),
)
#: Any short text, or a near well name.
any_well_texts = st.one_of(st.text(max_size=40), near_well_names)
#: Anything a user may give as a plate format: well counts, (rows, columns) tuples,
#: ``"ROWSxCOLUMNS"`` strings (well formed or not), huge numbers, floats, None, lists.
plate_formats = st.one_of(
    st.integers(-10, 2000),
    st.integers(),
    st.sampled_from([6, 12, 24, 48, 96, 384, 1536, True, False, None, 96.0, 1e300, math.nan]),
    st.tuples(st.integers(-3, 800), st.integers(-3, 12000)),
    st.tuples(st.one_of(st.integers(1, 9), st.floats(), st.text(max_size=2), st.none()), st.none()),
    st.builds(
        lambda r, sep, c: f"{r}{sep}{c}",
        st.one_of(st.integers(-5, 800), st.text("0123456789 \u0661", max_size=4)),
        st.sampled_from(["x", "X", " x ", "*", "xx", "x-", ""]),
        st.one_of(st.integers(-5, 12000), st.text("0123456789 \u00b2", max_size=4)),
    ),
    st.text(max_size=10),
    st.builds(
        lambda n, tail: "9" * n + tail, st.integers(4000, 6000), st.sampled_from(["", "\u00b2"])
    ),
    st.lists(st.integers(1, 30), max_size=3),
)

# -- instrument file names and user patterns --------------------------------------------------

#: ImageXpress-like file names, some off the scheme (``_s0``, ``_s``, no extension...).
imagexpress_names = st.builds(
    lambda pre, row, col, s, w, z, t, ext: f"{pre}{row_letters(row)}{col:02d}{s}_w{w}{z}{t}{ext}",
    st.sampled_from(["", "plate_", "a_b_", "A01_", "_", "x_A1_"]),
    st.integers(0, 40),
    st.integers(0, 120),
    st.sampled_from(["", "_s1", "_s0", "_s007", "_s"]),
    st.integers(0, 12),
    st.sampled_from(["", "_z001", "_z0", "_z10000"]),
    st.sampled_from(["", "_t002", "_t0"]),
    st.sampled_from([".tif", ".TIF", ".ome.tiff", "", ".", ".tif.bak"]),
)
#: Opera/Operetta-like file names with any numbers 0-40 (0 is off the scheme).
opera_names = st.builds(
    lambda r, c, f, p, ch, sk: f"r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}sk{sk}fk1fl1.tiff",
    *(st.integers(0, 40) for _ in range(6)),
)
#: Any file name: text, instrument names, names in ImageXpress sub-folders, and names
#: long enough to make a careless regex backtrack.
file_names = st.one_of(
    st.text(max_size=60),
    imagexpress_names,
    opera_names,
    st.builds(
        lambda a, b: f"{a}/{b}", st.sampled_from(["ZStep_2", "TimePoint_0", "x"]), imagexpress_names
    ),
    st.builds(lambda n: "a_" * n + "A01_w1.tif", st.integers(0, 400)),
    st.builds(lambda n: "A01_w1" + ".x" * n, st.integers(0, 400)),
)
#: Pieces of user regexes: the named groups, broken syntax and catastrophic nests.
regex_atoms = st.sampled_from(
    [
        "(?P<well>[A-P]\\d\\d)",
        "(?P<row>[A-P])",
        "(?P<col>\\d+)",
        "(?P<field>\\d+)",
        "(?P<channel>\\w+)",
        "(?P<z>\\d+)",
        "(?P<t>\\d+)",
        "(?P<well>",
        "(?P<well>.*)",
        "_",
        "\\.tif",
        ".*",
        "(a+)+",
        "(",
        ")",
        "[",
        "+",
        "*",
        "?",
        "{2,}",
        "\\",
        "(?P<x>a)",
        "(?P<well>a)(?P<well>b)",
        "(?i)",
        "\\1",
        "|",
        "$",
    ]
)
#: User file-name patterns: up to six :data:`regex_atoms` joined, or any short text.
user_patterns = st.one_of(
    st.lists(regex_atoms, max_size=6).map("".join),
    st.text(max_size=20),
)

# -- storage configurations -------------------------------------------------------------------

#: Each :class:`StorageConfig` option and values for it, valid or not.
STORAGE_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "compressor": st.sampled_from(
        ["blosc-zstd", "BLOSC_LZ4", " zstd ", "zlib", "gzip", "lz4", "none", "rar", ""]
    ),
    "level": st.one_of(st.none(), st.integers(-140_000, 70_000), st.sampled_from([3.0, True])),
    "shuffle": st.sampled_from([None, "none", "byte", "BIT", "bits", 0]),
    "chunks": st.sampled_from([None, "well", "plane", "sharded", "SHARDED", "tile"]),
    "ngff_version": st.sampled_from(["0.4", "0.5", 0.5, 0.4, "0.6", 5, None]),
    "plate": plate_formats,
    "fields": st.sampled_from(["stacked", "per-field", "per_field", "PER-FIELD", "tiles"]),
    "pyramid_levels": st.one_of(st.integers(-2, 14), st.sampled_from([1.0, True, "2"])),
    "checksum": st.sampled_from([None, True, False, 0, 1, "yes"]),
}
#: Keyword arguments of :class:`StorageConfig`: any subset of :data:`STORAGE_OPTIONS`,
#: each value also possibly any :data:`loose_json_values`.
storage_config_kwargs = st.fixed_dictionaries(
    {}, optional={k: st.one_of(v, loose_json_values) for k, v in STORAGE_OPTIONS.items()}
)

#: The pixel types :func:`small_plates` draws from (one big-endian).
PIXEL_DTYPES = ["u1", "u2", "u4", "i2", "i4", "f4", "f8", ">u2"]


@st.composite
def small_plates(draw: st.DrawFn) -> dict[str, Any]:
    """A small plate to write: every valid storage layout, random wells and well shapes.

    Returns a dictionary: ``config`` (a :class:`StorageConfig` of up to 4 x 5 wells),
    ``wells`` (1-3 :class:`Well`), ``shape`` (field, c, z, y, x), ``dtype`` (one of
    :data:`PIXEL_DTYPES`), ``seed`` (for the pixels) and ``names`` (whether to give
    each plane a file name).
    """
    version = draw(st.sampled_from(["0.4", "0.5"]))
    compressors = ["blosc-zstd", "blosc-lz4", "zstd", "gzip", "none"]
    if version == "0.4":
        compressors += ["zlib", "lz4"]
    compressor = draw(st.sampled_from(compressors))
    chunks = draw(st.sampled_from(["well", "plane", *(["sharded"] if version == "0.5" else [])]))
    rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    wells = draw(
        st.lists(
            st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1)),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    options: dict[str, Any] = {  # the config parses and checks each option
        "ngff_version": version,
        "compressor": compressor,
        "chunks": chunks,
        "plate": f"{rows}x{columns}",
        "fields": draw(st.sampled_from(["stacked", "per-field"])),
        "pyramid_levels": draw(st.integers(1, 2)),
        "checksum": draw(st.booleans()),
    }
    return {
        "config": StorageConfig(**options),
        "wells": [Well(r, c) for r, c in wells],
        "shape": (
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 2)),
            draw(st.integers(1, 9)),
            draw(st.integers(1, 11)),
        ),
        "dtype": draw(st.sampled_from(PIXEL_DTYPES)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "names": draw(st.booleans()),
    }


# -- OpenHCS side files -----------------------------------------------------------------------

#: File names an OpenHCS side file may hold: plain names, escapes from the store
#: (``..``, absolute paths, separators), NUL, very long names, and any short text.
hostile_file_names = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "x.tif",
            "../x.tif",
            "../../secret/x.tif",
            "a/b.tif",
            "a\\b.tif",
            "a\x00b.tif",
            "A01_s1_w1.tif",
            "B02_s1_w2.tif",
            "zarr.json",
            ".zattrs",
            "n" * 300 + ".tif",
            "/etc/passwd",
        ]
    ),
    st.text(max_size=12),
)
#: Plane coordinates in a file-name map: valid ``[field, c, z]``, out-of-range integers,
#: or any :data:`loose_json_values`.
plane_coordinates = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)).map(list),
    st.lists(st.integers(-2, 2**70), min_size=3, max_size=4),
    loose_json_values,
)

# -- zarr array documents ---------------------------------------------------------------------


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


#: The value of an :func:`array_document_mutations` example that removes its key.
DELETE: Any = _Delete()
#: Small integers, some negative: sizes and counts near the valid ones.
small_ints = st.integers(-2, 40)
#: Shapes and chunk shapes: small integers, the real sizes, and 2**31.
extents = st.lists(st.one_of(small_ints, st.sampled_from([16, 16, 2, 1, 2**31])), max_size=6)
#: Data type names, zarr v3 (``uint16``) and v2 (``<u2``), pixel types and others.
array_dtype_names = st.sampled_from(
    [
        *("uint16", "int16", "uint8", "uint32", "float32", "float64", "bool", "complex64"),
        *("<u2", ">u2", "|u1", "<i2", "<f8", ">f4", "|b1", "<u8", "|O", "<U2", "uint16"),
    ]
)


def near_values(original: Any) -> st.SearchStrategy[Any]:
    """Values close to ``original``: its own parts dropped, swapped or replaced.

    Parameters
    ----------
    original
        A JSON value; dictionaries and lists are varied part by part (recursively),
        anything else is replaced by any of :data:`json_values`.
    """
    if isinstance(original, dict) and original:
        return st.builds(
            lambda drop, key, value: {
                k: (value if k == key else v) for k, v in original.items() if k != drop
            },
            st.sampled_from([None, *original]),
            st.sampled_from(list(original)),
            st.one_of(json_values, *(near_values(v) for v in original.values())),
        )
    if isinstance(original, list) and original:
        return st.one_of(
            st.permutations(original),
            st.builds(
                lambda i: original[:i] + original[i + 1 :], st.integers(0, len(original) - 1)
            ),
            st.builds(
                lambda i, v: [*original[:i], v, *original[i + 1 :]],
                st.integers(0, len(original) - 1),
                st.one_of(json_values, small_ints, *(near_values(v) for v in original[:3])),
            ),
        )
    return json_values


def array_document_mutations(
    original: dict[str, Any], keys: list[str]
) -> st.SearchStrategy[tuple[str, Any]]:
    """``(key, value)``: ``original[key]`` replaced by any JSON, a near miss, or deleted.

    Parameters
    ----------
    original
        A zarr array document (``zarr.json`` or ``.zarray``), parsed.
    keys
        The keys to mutate, one per example; a value of :data:`DELETE` removes the key.
    """

    def values(key: str) -> st.SearchStrategy[Any]:
        special: list[st.SearchStrategy[Any]] = [json_values, st.just(DELETE)]
        if key == "shape" or key == "chunks":
            special.append(extents)
        if key in ("data_type", "dtype"):
            special.append(array_dtype_names)
        if key in original:
            special.append(near_values(original[key]))
        if key == "zarr_format":
            special.append(st.sampled_from([2, 3, 4, "3", 3.0]))
        if key == "node_type":
            special.append(st.sampled_from(["array", "group", "Array"]))
        return st.one_of(*special)

    return st.sampled_from(keys).flatmap(lambda key: st.tuples(st.just(key), values(key)))
