"""Instrument XML read safely: no entities, bounded size, errors naming the file."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import MetadataError

if TYPE_CHECKING:
    from pathlib import Path
    from xml.etree.ElementTree import Element

__all__ = ["MAX_XML_BYTES", "local_name", "namespace", "parse_xml", "to_float", "to_int"]

#: Largest metadata file read (a 1536-well CellVoyager ``.mlf`` is about 150 MB).
MAX_XML_BYTES: Final = 1 << 30
#: A document type declaration (the only place entities can be declared) or an entity.
_DECLARATION = re.compile(rb"<!(?:[Dd][Oo][Cc][Tt][Yy][Pp][Ee]|[Ee][Nn][Tt][Ii][Tt][Yy])")
_BOM = b"\xef\xbb\xbf"


def parse_xml(path: Path) -> Element:
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
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as safe_et
    from defusedxml import DefusedXmlException

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
    try:
        if plain:
            return std_et.fromstring(data)
        tree = safe_et.parse(str(path), forbid_dtd=False, forbid_entities=True)
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
    root = tree.getroot()
    if root is None:
        raise MetadataError(f"{str(path)!r} holds no XML element")
    return root


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
