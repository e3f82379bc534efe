"""OME-Zarr tables (Fractal/ngio ``tables/`` groups, AnnData on zarr): listing and reading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import MetadataError
from napari_wellzarr.storage import fsio

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ROI_COLUMNS",
    "TableInfo",
    "list_tables",
    "read_table",
    "well_conditions",
    "wells_with_tables",
]

#: The columns every ROI table has (micrometres, from the image's origin).
ROI_COLUMNS: Final = ("x_micrometer", "y_micrometer", "len_x_micrometer", "len_y_micrometer")
#: Rows a table may have before it is refused as a memory bomb (tables are read whole).
MAX_ROWS: Final = 1_000_000


@dataclass(frozen=True)
class TableInfo:
    """One table of a plate or image: its name, its declared ``type`` and its folder."""

    name: str
    kind: str
    path: Path

    def to_json(self) -> dict[str, str]:
        """The table as layer metadata lists it."""
        return {"name": self.name, "type": self.kind, "path": str(self.path)}


def list_tables(group: Path, zarr_format: int) -> list[TableInfo]:
    """The tables listed in ``group/tables`` (none when it has no such group).

    A table's kind is its ``type`` attribute (``roi_table``, ``feature_table``,
    ``condition_table``, ``masking_roi_table``...), else ``"table"``.
    """
    try:
        attrs = fsio.read_attrs(group / "tables", zarr_format)
    except FileNotFoundError:
        return []
    names = attrs.get("tables")
    if not isinstance(names, list):
        raise MetadataError(f"{group / 'tables'}: 'tables' is {names!r}, not a list of names")
    out = []
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise MetadataError(f"{group / 'tables'}: {name!r} is not a table name")
        path = group / "tables" / name
        try:
            kind = fsio.read_attrs(path, zarr_format).get("type")
        except FileNotFoundError:
            kind = "missing"
        out.append(TableInfo(name, kind if isinstance(kind, str) else "table", path))
    return out


def wells_with_tables(root: Path) -> frozenset[str]:
    """Paths (``row/column``) of the wells of which an image has a ``tables`` group.

    One listing of the plate's folders (no document is read), so that the tables of
    a plate's images are only looked for in the wells that have some.
    """
    found = set()
    for row in _subfolders(root):
        for column in _subfolders(row):
            if any(os.path.isdir(os.path.join(image, "tables")) for image in _subfolders(column)):
                found.add(f"{os.path.basename(row)}/{os.path.basename(column)}")
    return frozenset(found)


def _subfolders(path: str | Path) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def read_table(table: TableInfo, zarr_format: int) -> dict[str, np.ndarray[Any, Any]]:
    """The columns of an AnnData table: its ``obs`` index and columns, then ``X`` by ``var``.

    Raises
    ------
    MetadataError
        When the table is not an AnnData table of one row per ``obs`` entry.
    """
    import zarr

    try:
        group: Any = zarr.open_group(str(table.path), mode="r", zarr_format=zarr_format)  # type: ignore[arg-type]
        obs = group["obs"]
        index_key = str(obs.attrs.get("_index", "_index"))
        columns: dict[str, np.ndarray[Any, Any]] = {"index": _column(obs[index_key], table)}
        n = len(columns["index"])
        if n > MAX_ROWS:
            raise MetadataError(f"table {table.path}: {n} rows (more than {MAX_ROWS})")
        order = obs.attrs.get("column-order", [])
        for key in order if isinstance(order, list) else []:
            columns[str(key)] = _column(obs[key], table)
        if "X" in group:
            var = group["var"]
            names = [str(v) for v in _column(var[str(var.attrs.get("_index", "_index"))], table)]
            matrix = np.asarray(group["X"][...])
            if matrix.ndim != 2 or matrix.shape != (n, len(names)):
                raise MetadataError(
                    f"table {table.path}: X has shape {matrix.shape}, not {n} rows of "
                    f"{len(names)} columns ({names})"
                )
            for j, name in enumerate(names):
                columns[name] = matrix[:, j]
    except MetadataError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise MetadataError(
            f"table {table.path} ({table.kind}) is not an AnnData table: "
            f"{type(err).__name__}: {err}"
        ) from err
    bad = [k for k, v in columns.items() if len(v) != n]
    if bad:
        raise MetadataError(f"table {table.path}: columns {bad} do not have {n} rows")
    return columns


def _column(node: Any, table: TableInfo) -> np.ndarray[Any, Any]:
    """One dataframe column: a plain array, or a categorical (``categories`` + ``codes``)."""
    if hasattr(node, "shape"):
        values = np.asarray(node[...])
    else:
        categories = np.asarray(node["categories"][...])
        codes = np.asarray(node["codes"][...])
        if codes.size and (codes.max() >= len(categories) or codes.min() < -1):
            raise MetadataError(f"table {table.path}: a categorical column has bad codes")
        picked = categories[np.clip(codes, 0, None)] if len(categories) else codes
        values = np.where(codes >= 0, picked, "") if len(categories) else codes
    if values.ndim != 1:
        raise MetadataError(f"table {table.path}: a column of shape {values.shape}")
    if values.dtype.kind in "OTU":  # text (StringDType, object or fixed width): Python str
        return np.array([str(v) for v in values.tolist()], dtype=object)
    return values


def well_conditions(table: TableInfo, zarr_format: int) -> dict[str, str]:
    """``well name -> "drug=taxol, dose=1.0"`` from a condition table of a plate.

    The table names wells by ``row`` and ``column`` (or one ``well`` column); every
    other column is a condition.  Raises :class:`MetadataError` when it names no wells.
    """
    columns = read_table(table, zarr_format)
    columns.pop("index", None)
    if "row" in columns and "column" in columns:
        wells = [f"{r}{c}" for r, c in zip(columns.pop("row"), columns.pop("column"), strict=True)]
    elif "well" in columns:
        wells = [str(w) for w in columns.pop("well")]
    else:
        raise MetadataError(
            f"table {table.path} claims to be a {table.kind} but names no wells "
            f"(no 'row' and 'column', nor 'well' column; it has {sorted(columns)})"
        )
    out: dict[str, list[str]] = {}
    for i, well in enumerate(wells):
        values = [f"{k}={_text(v[i])}" for k, v in columns.items()]
        out.setdefault(well.replace("/", ""), []).append(", ".join(values))
    return {well: "; ".join(dict.fromkeys(parts)) for well, parts in out.items()}


def _text(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        number = float(value)
        return str(int(number)) if abs(number) < 1e15 else str(number)
    return str(value)
