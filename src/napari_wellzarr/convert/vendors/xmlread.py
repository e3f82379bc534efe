"""Instrument XML read safely: no entities, bounded size, errors naming the file."""

from __future__ import annotations

import gc
import io
import math
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import MetadataError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from xml.etree.ElementTree import Element

    from napari_wellzarr.convert.srcfs import SourcePath

__all__ = [
    "MAX_XML_BYTES",
    "local_name",
    "namespace",
    "parse_xml",
    "read_records",
    "to_float",
    "to_int",
]

#: Largest metadata file read (a 1536-well CellVoyager ``.mlf`` is about 150 MB).
MAX_XML_BYTES: Final = 1 << 30
#: A document type declaration (the only place entities can be declared) or an entity.
_DECLARATION = re.compile(rb"<!(?:[Dd][Oo][Cc][Tt][Yy][Pp][Ee]|[Ee][Nn][Tt][Ii][Tt][Yy])")
_BOM = b"\xef\xbb\xbf"


def _read(path: SourcePath) -> tuple[bytes, bool]:
    """The bytes of ``path`` (at most :data:`MAX_XML_BYTES`) and whether they are plain.

    Plain: an ASCII-compatible encoding and no ``<!DOCTYPE`` or ``<!ENTITY``, so the
    file can declare no entity and the standard C parser may read it (3x faster).
    """
    try:
        size = path.stat().st_size
    except OSError as err:
        raise MetadataError(f"cannot read {str(path)!r}: {err.strerror or err}") from err
    if size > MAX_XML_BYTES:
        raise MetadataError(
            f"{str(path)!r} is {size} bytes, more than the {MAX_XML_BYTES} a metadata file may have"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MetadataError(f"cannot read {str(path)!r}: {err.strerror or err}") from err
    body = data.removeprefix(_BOM).lstrip()
    plain = body[:1] == b"<" and body[1:2] not in (b"", b"\x00") and not _DECLARATION.search(data)
    return data, plain


@contextmanager
def _reading(path: SourcePath) -> Iterator[None]:
    """Turn a parser's failures into :class:`MetadataError` naming ``path``."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException

    try:
        yield
    except DefusedXmlException as err:
        raise MetadataError(
            f"{str(path)!r} declares XML entities or external references ({err}); "
            "instrument metadata has none, so it is refused"
        ) from err
    except ParseError as err:
        raise MetadataError(
            f"{str(path)!r} is not well-formed XML (truncated or damaged?): {err}"
        ) from err
    except OSError as err:
        raise MetadataError(f"cannot read {str(path)!r}: {err.strerror or err}") from err


def parse_xml(path: SourcePath) -> Element:
    """Parse ``path`` with entity expansion and external references forbidden.

    A file in an ASCII-compatible encoding with no ``<!DOCTYPE`` or ``<!ENTITY`` can
    declare no entity, so the standard C parser reads it (3x faster); any other file
    goes through ``defusedxml``, which refuses entity declarations.

    Raises
    ------
    MetadataError
        The file is missing, too large, not well-formed (truncated), or declares
        entities (an "entity bomb" is refused before any expansion); the message names
        the file.
    """
    import xml.etree.ElementTree as std_et

    import defusedxml.ElementTree as safe_et

    data, plain = _read(path)
    with _reading(path):
        if plain:
            return std_et.fromstring(data)
        tree = safe_et.parse(io.BytesIO(data), forbid_dtd=False, forbid_entities=True)
    root = tree.getroot()
    if root is None:
        raise MetadataError(f"{str(path)!r} holds no XML element")
    return root


@contextmanager
def _no_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored after).

    Parsing allocates hundreds of thousands of elements, which makes the collector walk
    every object of the process again and again (2-3x the parse time); elements form no
    cycles, so nothing is left uncollected.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def read_records(
    path: SourcePath, record: str, keep: Collection[str]
) -> tuple[Element, list[dict[str, str]]]:
    """Parse ``path`` as :func:`parse_xml` does, streaming its ``record`` elements.

    Each ``record`` element with children becomes ``{child local name: text}`` (the
    first child of each name in ``keep``, text stripped) as soon as it ends, and is
    emptied: a 1536-well index never holds its 200 000 elements at once.

    Returns
    -------
    root, records
        The document's root (its records left empty) and the records in document order.

    Raises
    ------
    MetadataError
        As :func:`parse_xml`.
    """
    import xml.etree.ElementTree as std_et

    import defusedxml.ElementTree as safe_et

    data, plain = _read(path)
    source = io.BytesIO(data)
    wanted = frozenset(keep)
    is_record: dict[str, bool] = {}
    names: dict[str, str] = {}  # child tag -> local name ("" when not kept)
    records: list[dict[str, str]] = []
    with _reading(path), _no_collection():
        events = (
            std_et.iterparse(source, events=("end",))
            if plain
            else safe_et.iterparse(source, events=("end",), forbid_dtd=False, forbid_entities=True)
        )
        for _, element in events:
            tag = element.tag
            found = is_record.get(tag)
            if found is None:
                found = is_record[tag] = local_name(tag) == record
            if not found or not len(element):
                continue
            fields: dict[str, str] = {}
            for child in reversed(element):  # the first child of a name is written last
                name = names.get(child.tag)
                if name is None:
                    local = local_name(child.tag)
                    name = names[child.tag] = local if local in wanted else ""
                if name:
                    fields[name] = child.text.strip() if child.text else ""
            records.append(fields)
            element.clear()
        root: Element | None = getattr(events, "root", None)
    if root is None:
        raise MetadataError(f"{str(path)!r} holds no XML element")
    return root, records


def local_name(tag: str) -> str:
    """``Row`` for ``{namespace}Row``."""
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    """``namespace`` for ``{namespace}Row`` ('' when none)."""
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def to_int(text: str | None, what: str, where: str, lo: int = 0, hi: int = 1 << 20) -> int:
    """``text`` as an integer in ``[lo, hi]``, or :class:`MetadataError` naming ``where``."""
    try:
        value = int((text or "").strip())
    except ValueError:
        raise MetadataError(f"{where}: {what} {text!r} is not an integer") from None
    if not lo <= value <= hi:
        raise MetadataError(f"{where}: {what} {value} lies outside {lo}..{hi}")
    return value


def to_float(text: str | None) -> float | None:
    """``text`` as a finite float, ``None`` when absent or not a finite number."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
