"""One frozen, validated object for every storage choice."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from napari_wellzarr.errors import ConfigError
from napari_wellzarr.storage.geometry import PlateGeometry, whole_plate_levels

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ChunkStrategy",
    "Compressor",
    "FieldArrangement",
    "NgffVersion",
    "Shuffle",
    "StorageConfig",
]


#: Automatic pyramids shrink by at most this much from one level to the next.
AUTO_STEP: Final = 8
#: A whole-plate level of 4x (a mosaic 4096-8192 px across: 96 wells of 512 x 512, 24 of
#: 1080 x 1080, 6 of 2048 x 2048) adds 1/16 of the plate's pixels, and the plate overview,
#: built from it, 1/16 more.  Where the plate gets an overview (0.5, sharded), the level is
#: not stored and the overview is built from full resolution instead: the writer that
#: finishes the plate reads it back once.  Up to this many raw bytes of plate (its grid of
#: wells); a larger plate stores the level (the overview then reads 1/16 of it).
OVERVIEW_FROM_FULL_RESOLUTION_BYTES: Final = 4 * 2**30


class Compressor(StrEnum):
    """Compression codec of the pixel chunks."""

    BLOSC_ZSTD = "blosc-zstd"
    BLOSC_LZ4 = "blosc-lz4"
    ZSTD = "zstd"
    ZLIB = "zlib"
    GZIP = "gzip"
    LZ4 = "lz4"
    NONE = "none"


class Shuffle(StrEnum):
    """Blosc's pre-compression shuffle filter."""

    NONE = "none"
    BYTE = "byte"
    BIT = "bit"


class ChunkStrategy(StrEnum):
    """How an image array is cut into chunks (files).

    ``well``: the whole array in one chunk (the OpenHCS ``WELL`` strategy);
    ``plane``: one chunk per 2D plane (OpenHCS ``FILE``);
    ``sharded``: one shard file per array holding one chunk per plane (zarr v3 only).
    """

    WELL = "well"
    PLANE = "plane"
    SHARDED = "sharded"


class NgffVersion(StrEnum):
    """OME-NGFF version; fixes the zarr format (0.4 -> zarr v2, 0.5 -> zarr v3)."""

    V04 = "0.4"
    V05 = "0.5"


class FieldArrangement(StrEnum):
    """How the fields of view of a well are stored.

    ``stacked``: one (field, [t,] c, z, y, x) image per well, the well-chunked layout;
    ``per-field``: one image group per field, the standard layout every reader knows.
    """

    STACKED = "stacked"
    PER_FIELD = "per-field"


@dataclass(frozen=True)
class _LevelRule:
    low: int
    high: int
    default: int
    meaning: str


_BLOSC_LEVEL: Final = _LevelRule(0, 9, 3, "blosc clevel (0 = store uncompressed)")
# With lz4 inside, blosc's level mostly sets its block size: 9 compresses best and still
# encodes at ~1.2 GB/s per core (bench/README.md, "The default codec").
_BLOSC_LZ4_LEVEL: Final = _LevelRule(0, 9, 9, "blosc clevel (0 = store uncompressed)")
_DEFLATE_LEVEL: Final = _LevelRule(0, 9, 6, "deflate level (0 = store, 9 = smallest)")
_LEVELS: Final[dict[Compressor, _LevelRule]] = {
    Compressor.BLOSC_ZSTD: _BLOSC_LEVEL,
    Compressor.BLOSC_LZ4: _BLOSC_LZ4_LEVEL,
    Compressor.ZSTD: _LevelRule(-131072, 22, 3, "zstd level (negative = faster, 22 = smallest)"),
    Compressor.ZLIB: _DEFLATE_LEVEL,
    Compressor.GZIP: _DEFLATE_LEVEL,
    # LZ4's knob is an acceleration: higher is FASTER and compresses LESS.
    Compressor.LZ4: _LevelRule(1, 65537, 1, "lz4 acceleration (1 = best ratio, higher = faster)"),
}
_BLOSC: Final = frozenset({Compressor.BLOSC_ZSTD, Compressor.BLOSC_LZ4})
# Codecs zarr v3 defines; zlib and lz4 exist there only as numcodecs extensions that
# other implementations cannot read, so they are refused for OME-NGFF 0.5.
_V3_CODECS: Final = frozenset(
    {Compressor.BLOSC_ZSTD, Compressor.BLOSC_LZ4, Compressor.ZSTD, Compressor.GZIP, Compressor.NONE}
)
_V3_ALTERNATIVE: Final = {Compressor.ZLIB: "gzip (the same DEFLATE)", Compressor.LZ4: "blosc-lz4"}

_E = TypeVar("_E", bound=Enum)


def _coerce(enum: type[_E], value: object, option: str) -> _E:
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).strip().lower().replace("_", "-"))
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ConfigError(f"{option}={value!r} is not allowed; choose one of {allowed}") from None


@dataclass(frozen=True)
class StorageConfig:
    """Every storage choice of a plate, validated at construction.

    Parameters
    ----------
    compressor
        ``blosc-lz4`` (default), ``blosc-zstd``, ``zstd``, ``gzip``, ``none``, and for
        OME-NGFF 0.4 only also ``zlib`` and ``lz4``.
    level
        The codec's own level; ``None`` picks the codec's default.  Blosc 0-9, zstd
        -131072..22, zlib/gzip 0-9, lz4 is an *acceleration* 1..65537 (higher = faster,
        larger files).
    shuffle
        Blosc only: ``none``, ``byte`` or ``bit`` (default ``bit``: best for 12-16 bit
        microscopy data).
    chunks
        ``sharded`` (default on 0.5), ``plane`` (default on 0.4) or ``well``.
    ngff_version
        ``0.5`` (zarr v3, default) or ``0.4`` (zarr v2).
    plate
        Plate format: 6, 12, 24, 48, 96 (default), 384, 1536 wells, ``"ROWSxCOLUMNS"``
        or a :class:`PlateGeometry`.
    fields
        ``stacked`` (one (field, c, z, y, x) array per well, default) or ``per-field``.
    pyramid_levels
        Resolution levels written per image, each halving y and x (1 = full resolution
        only).  ``None`` (default): a sparse pyramid for browsing the whole plate, see
        :meth:`level_factors`.
    checksum
        Store a CRC32C checksum with every chunk so that damaged chunks are reported,
        never decoded into wrong pixels (blosc has no checksum of its own).  Default:
        on for 0.5 (the zarr v3 ``crc32c`` codec, after compression: nearly free); off
        for 0.4, where numcodecs' ``crc32c`` filter checksums the *uncompressed* bytes and
        costs about two thirds of the write speed.
    """

    compressor: Compressor = Compressor.BLOSC_LZ4
    level: int | None = None
    shuffle: Shuffle | None = None
    chunks: ChunkStrategy | None = None
    ngff_version: NgffVersion = NgffVersion.V05
    plate: PlateGeometry = field(default_factory=lambda: PlateGeometry(8, 12))
    fields: FieldArrangement = FieldArrangement.STACKED
    pyramid_levels: int | None = None
    checksum: bool | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        compressor = _coerce(Compressor, self.compressor, "compressor")
        version = _coerce(NgffVersion, self.ngff_version, "ngff_version")
        set_(self, "compressor", compressor)
        set_(self, "ngff_version", version)
        set_(self, "fields", _coerce(FieldArrangement, self.fields, "fields"))
        set_(self, "plate", PlateGeometry.parse(self.plate))

        if version is NgffVersion.V05 and compressor not in _V3_CODECS:
            raise ConfigError(
                f"compressor={compressor.value!r} is not a zarr v3 codec, so OME-NGFF 0.5 "
                f"cannot use it; use {_V3_ALTERNATIVE[compressor]}, or ngff_version='0.4'"
            )
        set_(self, "level", self._checked_level(compressor, self.level))
        set_(self, "shuffle", self._checked_shuffle(compressor, self.shuffle))

        default_chunks = (
            ChunkStrategy.SHARDED if version is NgffVersion.V05 else ChunkStrategy.PLANE
        )
        chunks = (
            default_chunks if self.chunks is None else _coerce(ChunkStrategy, self.chunks, "chunks")
        )
        if chunks is ChunkStrategy.SHARDED and version is NgffVersion.V04:
            raise ConfigError(
                "chunks='sharded' needs zarr v3 (ngff_version='0.5'); with ngff_version='0.4' "
                "choose chunks='plane' or 'well'"
            )
        set_(self, "chunks", chunks)

        if self.checksum is None:
            set_(self, "checksum", version is NgffVersion.V05)
        elif not isinstance(self.checksum, bool):
            raise ConfigError(f"checksum must be True or False, got {self.checksum!r}")
        levels = self.pyramid_levels
        if levels is not None and (
            isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 12
        ):
            raise ConfigError(
                f"pyramid_levels must be an integer in 1..12 or None (automatic), got {levels!r}"
            )

    @staticmethod
    def _checked_level(compressor: Compressor, level: object) -> int | None:
        if compressor is Compressor.NONE:
            if level is not None:
                raise ConfigError(f"level={level!r} given, but compressor='none' has no level")
            return None
        rule = _LEVELS[compressor]
        if level is None:
            return rule.default
        if isinstance(level, bool) or not isinstance(level, int):
            raise ConfigError(f"level={level!r} for {compressor.value!r} must be an integer")
        if not rule.low <= level <= rule.high:
            raise ConfigError(
                f"level={level} is out of range for compressor={compressor.value!r}: "
                f"{rule.meaning}, allowed {rule.low}..{rule.high}"
            )
        return level

    @staticmethod
    def _checked_shuffle(compressor: Compressor, shuffle: object) -> Shuffle | None:
        if compressor not in _BLOSC:
            if shuffle not in (None, Shuffle.NONE, "none"):
                raise ConfigError(
                    f"shuffle={shuffle!r} applies to blosc compressors only, "
                    f"not compressor={compressor.value!r}"
                )
            return None
        return Shuffle.BIT if shuffle is None else _coerce(Shuffle, shuffle, "shuffle")

    def level_factors(self, plane: tuple[int, int], well_bytes: int | None = None) -> list[int]:
        """How much each written level shrinks a ``plane``-sized (y, x) image.

        With ``pyramid_levels`` given: 1, 2, 4, ...  Automatic (``None``): the level a
        viewer draws the whole plate with (:func:`whole_plate_levels`: the plate's
        mosaic at most 2048 px across, e.g. 8x smaller for 384 wells of 512 x 512),
        and on the way there every 8x step (2048 x 2048 planes on 1536 wells: 1, 8,
        64).  A 1/63 or less more pixels to write, yet a field, z or time step on the
        whole plate reads only overview pixels.  A plate small enough to be shown
        at full resolution gets no level, and neither does a plate whose whole-plate
        level is 4x when its plate overview will be built from full resolution
        (:data:`OVERVIEW_FROM_FULL_RESOLUTION_BYTES`; ``well_bytes``: a whole well's
        raw bytes, without it the level is stored).
        """
        if self.pyramid_levels is not None:
            return [2**k for k in range(self.pyramid_levels)]
        levels = whole_plate_levels(self.plate.rows, self.plate.columns, plane)
        overview = 2 ** (levels - 1)
        if overview == 4 and self._overview_replaces_level(well_bytes):
            return [1]
        factors = [1]
        while factors[-1] * AUTO_STEP < overview:
            factors.append(factors[-1] * AUTO_STEP)
        return factors if overview == 1 else [*factors, overview]

    def _overview_replaces_level(self, well_bytes: int | None) -> bool:
        """Whether the plate overview (0.5, sharded) is built from full resolution."""
        if well_bytes is None or self.zarr_format != 3:
            return False
        if self.chunk_strategy is not ChunkStrategy.SHARDED:
            return False
        wells = self.plate.rows * self.plate.columns
        return wells * well_bytes <= OVERVIEW_FROM_FULL_RESOLUTION_BYTES

    def level_shapes(
        self, shape: tuple[int, ...], well_bytes: int | None = None
    ) -> list[tuple[int, ...]]:
        """Array shapes of the levels written for an image of ``shape`` (y, x rounded up)."""
        y, x = shape[-2:]
        factors = self.level_factors((y, x), well_bytes)
        return [(*shape[:-2], -(-y // f), -(-x // f)) for f in factors]

    # -- what zarr needs -------------------------------------------------------------

    @property
    def zarr_format(self) -> int:
        """2 for OME-NGFF 0.4, 3 for 0.5."""
        return 3 if self.ngff_version is NgffVersion.V05 else 2

    @property
    def chunk_strategy(self) -> ChunkStrategy:
        """The resolved chunk strategy (never ``None`` after construction)."""
        assert self.chunks is not None
        return self.chunks

    def zarr_codecs(self) -> dict[str, Any]:
        """Return the ``compressors=`` (and ``filters=``) arguments for ``zarr.create_array``."""
        compressor = self.zarr_compressors()
        if not self.checksum:
            return {"compressors": compressor}
        if self.zarr_format == 3:
            from zarr.codecs import Crc32cCodec

            return {"compressors": [*(compressor or []), Crc32cCodec()]}
        import numcodecs

        return {"compressors": compressor, "filters": [numcodecs.CRC32C()]}

    def zarr_compressors(self) -> Any:
        """Return the ``compressors=`` argument for ``zarr.create_array`` (no checksum)."""
        level, shuffle = self.level, self.shuffle
        if self.compressor is Compressor.NONE:
            return None
        assert level is not None  # every codec but "none" has a level after validation
        cname: Literal["zstd", "lz4"] = (
            "zstd" if self.compressor is Compressor.BLOSC_ZSTD else "lz4"
        )
        if self.zarr_format == 3:
            from zarr.codecs import BloscCodec, BloscShuffle, GzipCodec, ZstdCodec

            if self.compressor in _BLOSC:
                v3_shuffle = {
                    Shuffle.NONE: BloscShuffle.noshuffle,
                    Shuffle.BYTE: BloscShuffle.shuffle,
                    Shuffle.BIT: BloscShuffle.bitshuffle,
                }
                return [
                    BloscCodec(
                        cname=cname, clevel=level, shuffle=v3_shuffle[shuffle or Shuffle.BIT]
                    )
                ]
            if self.compressor is Compressor.ZSTD:
                return [ZstdCodec(level=level)]
            return [GzipCodec(level=level)]
        return self.numcodec()

    def numcodec(self) -> Any:
        """The compressor as a numcodecs object (zarr v2 arrays, size estimates), or None."""
        import numcodecs

        level, shuffle = self.level, self.shuffle
        if self.compressor is Compressor.NONE:
            return None
        assert level is not None  # every codec but "none" has a level after validation
        if self.compressor in _BLOSC:
            v2_shuffle = {
                Shuffle.NONE: numcodecs.Blosc.NOSHUFFLE,
                Shuffle.BYTE: numcodecs.Blosc.SHUFFLE,
                Shuffle.BIT: numcodecs.Blosc.BITSHUFFLE,
            }
            cname = "zstd" if self.compressor is Compressor.BLOSC_ZSTD else "lz4"
            return numcodecs.Blosc(
                cname=cname, clevel=level, shuffle=v2_shuffle[shuffle or Shuffle.BIT]
            )
        v2_codecs = {
            Compressor.ZSTD: numcodecs.Zstd,
            Compressor.ZLIB: numcodecs.Zlib,
            Compressor.GZIP: numcodecs.GZip,
        }
        if self.compressor is Compressor.LZ4:
            return numcodecs.LZ4(acceleration=level)
        return v2_codecs[self.compressor](level=level)

    def chunk_key_encoding(self) -> dict[str, Any]:
        """How chunk files are named: ``c.0.0.0.0.0`` on 0.5, ``0/0/0/0/0`` on 0.4.

        OME-NGFF 0.4 requires ``/``.  0.5 allows every zarr v3 encoding; ``.`` keeps each
        array's chunk or shard files in the array's own folder instead of five folders
        deeper, which is most of the cost of a cold plane read (``bench/README.md``).
        """
        if self.zarr_format == 2:
            return {"name": "v2", "separator": "/"}
        return {"name": "default", "separator": "."}

    def chunking(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """Return ``(chunks, shards)`` for an image array whose last two axes are y, x.

        ``shards`` is ``None`` unless the strategy is ``sharded``.
        """
        if any(s < 0 for s in shape) or len(shape) < 2:
            raise ConfigError(f"array shape {shape} is not an image shape (..., y, x)")
        whole = tuple(max(1, s) for s in shape)
        plane = (1,) * (len(shape) - 2) + whole[-2:]
        if self.chunks is ChunkStrategy.WELL:
            return whole, None
        if self.chunks is ChunkStrategy.PLANE:
            return plane, None
        return plane, whole

    # -- (de)serialisation, for metadata, the CLI and the widget ----------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict that :meth:`from_dict` turns back into this config."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Enum):
                out[key] = value.value
        out["plate"] = f"{self.plate.rows}x{self.plate.columns}"
        if self.pyramid_levels is None:
            # Left out, not null: versions before the automatic pyramid refuse null, and
            # read the plate from its multiscales metadata anyway.
            del out["pyramid_levels"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StorageConfig:
        """Build a config from :meth:`to_dict` output; unknown keys are refused."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown storage option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**dict(data))

    def raw_bytes_per_chunk(self, shape: tuple[int, ...], itemsize: int) -> int:
        """Uncompressed bytes of one chunk of an array of ``shape`` (for size estimates)."""
        chunks, _ = self.chunking(shape)
        return math.prod(chunks) * itemsize
