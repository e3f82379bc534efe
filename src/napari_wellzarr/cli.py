"""The ``wellzarr`` command: convert microscope image folders to plates, inspect, validate."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from napari_wellzarr.convert.vendors import vendor_names
from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage.config import (
    ChunkStrategy,
    Compressor,
    FieldArrangement,
    NgffVersion,
    Shuffle,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from napari_wellzarr.convert.engine import ConversionResult, WellEvent
    from napari_wellzarr.convert.sources import ConversionPlan
    from napari_wellzarr.storage.config import StorageConfig

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INVALID: Final = 3
EXIT_INTERRUPTED: Final = 130
_SHOW: Final = 5
_STORAGE_OPTIONS: Final = (
    "compressor",
    "level",
    "shuffle",
    "chunks",
    "ngff_version",
    "plate",
    "fields",
    "pyramid_levels",
)


def _values(enum: Any) -> list[str]:
    return [m.value for m in enum]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wellzarr",
        description="Well-chunked OME-Zarr HCS plates from microscope image folders.",
        epilog="Exit codes: 0 ok, 1 conversion failed, 2 usage/input error, "
        "3 validation failed, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _convert_parser(sub)
    info = sub.add_parser("info", help="describe a plate: layout, wells, sizes, codecs, chunks")
    info.add_argument("plate", type=_path_or_url, help="a plate folder or URL")
    info.add_argument("--json", action="store_true", help="print JSON")
    validate = sub.add_parser("validate", help="check a plate (OME-NGFF + consistency)")
    validate.add_argument("plate", type=_path_or_url, help="a plate folder or URL")
    validate.add_argument("--deep", action="store_true", help="also decode every chunk")
    validate.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _convert_parser(sub: Any) -> None:
    conv = sub.add_parser(
        "convert", help="convert a folder (or s3:// prefix) of TIFF files into a plate"
    )
    conv.add_argument(
        "source",
        type=_source,
        help="folder of microscope images (searched deeply), or an s3://bucket/prefix URL of "
        "one uploaded to object storage (credentials as for reading: AWS_* variables incl. "
        "AWS_ENDPOINT_URL, ~/.aws files, or none for a public bucket); every worker reads "
        "its wells' files from there itself",
    )
    conv.add_argument(
        "dest",
        type=_local_dest,
        help="the plate to write, e.g. screen.ome.zarr or s3://bucket/screen.ome.zarr",
    )
    names = conv.add_argument_group("file names")
    names.add_argument(
        "--scheme",
        default="auto",
        choices=["auto", *vendor_names(), "imagexpress", "opera", "pattern"],
        help="an instrument export (metaxpress...) or a naming scheme (default: auto, an "
        "export recognised by its index files, else the scheme matching the most files)",
    )
    names.add_argument(
        "--pattern",
        metavar="REGEX",
        help="regular expression with named groups well (or row + col), field, channel, z, t",
    )
    names.add_argument(
        "--pattern-timeout", type=float, default=5.0, metavar="S", help="(+1 ms per file)"
    )
    names.add_argument("--channel-names", metavar="A,B,..", help="in channel order")
    store = conv.add_argument_group(
        "storage",
        "defaults: blosc-lz4 9 bit-shuffle, sharded, OME-NGFF 0.5, the smallest "
        "plate that fits, stacked fields; on --resume the plate's own options",
    )
    store.add_argument("--compressor", choices=_values(Compressor))
    store.add_argument("--level", type=int, metavar="N", help="the codec's level")
    store.add_argument("--shuffle", choices=_values(Shuffle), help="blosc only")
    store.add_argument("--chunks", choices=_values(ChunkStrategy))
    store.add_argument("--ngff-version", choices=_values(NgffVersion))
    store.add_argument(
        "--plate-format", dest="plate", metavar="FORMAT", help="6..1536 wells or ROWSxCOLUMNS"
    )
    store.add_argument("--fields", choices=_values(FieldArrangement))
    store.add_argument(
        "--pyramid-levels", type=int, metavar="N", help="default: a whole-plate overview"
    )
    store.add_argument("--pixel-size", type=float, metavar="UM", help="micrometres per pixel")
    store.add_argument("--z-step", type=float, metavar="UM", help="micrometres between z planes")
    run = conv.add_argument_group("running")
    run.add_argument("--strict", action="store_true", help="refuse when a plane has no file")
    run.add_argument("--workers", type=int, default=1, metavar="N", help="local processes")
    run.add_argument("--scheduler", metavar="ADDRESS", help="a dask.distributed scheduler")
    run.add_argument("--resume", action="store_true", help="complete an interrupted run")
    run.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    run.add_argument("--dry-run", action="store_true", help="scan and report, write nothing")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    run.add_argument("--json", action="store_true", help="print the result as JSON")


# -- convert --------------------------------------------------------------------------------


def _storage_config(args: argparse.Namespace, plan: ConversionPlan) -> StorageConfig:
    """Options given on the command line over the plate's own (``--resume``) or defaults."""
    from napari_wellzarr.storage import fsio
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.locations import open_location
    from napari_wellzarr.storage.store import PlateStore

    given = {k: getattr(args, k) for k in _STORAGE_OPTIONS if getattr(args, k) is not None}
    base: dict[str, Any] = {}
    # (a folder without a plate document, e.g. killed while creating it: the defaults)
    dest = args.dest
    if isinstance(dest, str):  # s3://: a plate document there, or none yet
        if args.resume and fsio.has_node_doc(open_location(dest, fresh=True)):
            saved = PlateStore.open(dest).config
            base = saved.to_dict() if saved is not None else {}
    elif args.resume and dest.is_dir() and fsio.detect_zarr_format(dest) is not None:
        saved = PlateStore.open(dest).config
        base = saved.to_dict() if saved is not None else {}
    if not base:
        base = {"plate": plan.smallest_plate()}
        if plan.has_time and "fields" not in given:
            base["fields"] = "per-field"  # a stacked well cannot hold a time axis
    elif "compressor" in given:
        for key in ("level", "shuffle"):  # another codec: its own defaults unless given
            if key not in given:
                base.pop(key, None)
    return StorageConfig.from_dict({**base, **given})


def _print_plan(plan: ConversionPlan, out: TextIO) -> None:
    s = plan.summary()
    print(
        f"{s['files']} image file(s) in {s['source']}: scheme {s['scheme']} "
        f"({', '.join(f'{k} {v}' for k, v in s['scheme_counts'].items())}), "
        f"{s['unmatched_files']} not matched, {s['other_files']} other file(s) ignored",
        file=out,
    )
    print(
        f"{s['wells']} well(s) x {s['fields']} field(s) x {s['channels']} channel(s) "
        f"{s['channel_names']} x {s['z']} z x {s['t']} t, planes "
        f"{s['plane_shape'][0]}x{s['plane_shape'][1]} {s['dtype']}, "
        f"{_mb(s['raw_bytes'])} raw",
        file=out,
    )
    for item in plan.unmatched[:_SHOW]:
        print(f"  not matched: {item.path} ({item.reason})", file=out)
    if len(plan.unmatched) > _SHOW:
        print(f"  ... and {len(plan.unmatched) - _SHOW} more not matched", file=out)
    meta = s["instrument"]
    if meta is not None:
        size, fmt = meta["pixel_size_um"], meta["plate_format"]
        print(
            f"{meta['vendor']} export, plate {meta['plate_name']!r}"
            f"{f' ({fmt[0]}x{fmt[1]} wells)' if fmt else ''}: "
            f"pixel size {'unknown' if size is None else f'{size[1]} x {size[0]} um'}, "
            f"z step {meta['z_step_um'] or '-'} um, {meta['fields_with_positions']} field "
            f"position(s), {meta['projections']} projection(s) {meta['projection_methods']}",
            file=out,
        )
        for warning in meta["warnings"]:
            print(f"  warning: {warning}", file=out)
        for item in meta["skipped"]:  # every file left out of the plate, with its reason
            print(f"  not in the plate: {item['path']} ({item['reason']})", file=out)
    if plan.missing:
        print(f"{len(plan.missing)} plane(s) have no file:", file=out)
        for miss in plan.missing[:_SHOW]:
            print(f"  missing: {miss.name}", file=out)
        if len(plan.missing) > _SHOW:
            print(f"  ... and {len(plan.missing) - _SHOW} more", file=out)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class _Progress:
    """A progress bar on a terminal, one line per well otherwise."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.start = time.perf_counter()
        self.bytes = 0

    def __call__(self, event: WellEvent) -> None:
        self.bytes += event.raw_bytes if event.status == "written" else 0
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.bytes / elapsed / 1e6 if elapsed > 0 else 0.0
        if not self.tty:
            note = f": {event.message}" if event.message else ""
            print(
                f"well {event.well} {event.status} ({event.done}/{event.total}){note}",
                file=self.out,
                flush=True,
            )
            return
        width = 30
        filled = width * event.done // max(1, event.total)
        eta = elapsed / event.done * (event.total - event.done) if event.done else 0.0
        bar = "#" * filled + "." * (width - filled)
        print(
            f"\r[{bar}] {event.done}/{event.total} wells {rate:7.1f} MB/s ETA {eta:5.0f} s",
            end="" if event.done < event.total else "\n",
            file=self.out,
            flush=True,
        )


class _Interrupts:
    """First Ctrl-C / SIGTERM: finish the wells in flight, then stop; second: stop now."""

    def __init__(self, cancel: threading.Event, out: TextIO) -> None:
        self.cancel = cancel
        self.out = out
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.cancel.set()
        print(
            "\nwellzarr: stopping after the wells in flight (interrupt again to abort)",
            file=self.out,
            flush=True,
        )


def _convert(args: argparse.Namespace) -> int:
    from napari_wellzarr.convert.engine import convert, scan_source

    if args.workers < 1:
        raise _UsageError(f"--workers {args.workers}: give 1 or more")
    channel_names = (
        [c.strip() for c in args.channel_names.split(",")] if args.channel_names else None
    )
    plan = scan_source(
        args.source,
        scheme=args.scheme,
        pattern=args.pattern,
        channel_names=channel_names,
        pattern_timeout=args.pattern_timeout,
    )
    config = _storage_config(args, plan)
    if not args.quiet:
        _print_plan(plan, sys.stderr)  # stdout is for the result
    if args.dry_run:
        plan.check_config(config)
        estimate = plan.estimate_output_bytes(config)
        if args.json:
            print(json.dumps({**plan.summary(), "estimated_bytes": estimate}, indent=2))
        else:
            print(f"estimated plate size: {_mb(estimate)} ({config.compressor.value})")
        return EXIT_OK
    cancel = threading.Event()
    with _Interrupts(cancel, sys.stderr):
        result = convert(
            plan,
            args.dest,
            config,
            strict=args.strict,
            workers=args.workers,
            scheduler=args.scheduler,
            resume=args.resume,
            overwrite=args.overwrite,
            pixel_size=args.pixel_size,
            z_step=args.z_step,
            progress=_Progress(sys.stderr, args.quiet),
            cancel=cancel,
        )
    return _report_result(result, args.json)


def _report_result(result: ConversionResult, as_json: bool) -> int:
    code = EXIT_OK
    if result.failed:
        code = EXIT_FAILED
    elif result.cancelled or result.remaining:
        code = EXIT_INTERRUPTED
    if as_json:
        doc = {
            "plate": str(result.plate),
            "complete": result.complete,
            "written": list(result.written),
            "skipped": list(result.skipped),
            "failed": dict(result.failed),
            "remaining": list(result.remaining),
            "raw_bytes": result.raw_bytes,
            "seconds": round(result.seconds, 3),
            "missing_planes": result.missing_planes,
            "exit_code": code,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{result.plate}: {len(result.written)} well(s) written, {len(result.skipped)} "
            f"kept, {_mb(result.raw_bytes)} raw in {result.seconds:.1f} s "
            f"({result.throughput / 1e6:.1f} MB/s)"
        )
    for well, reason in result.failed:
        print(f"wellzarr: well {well} failed: {reason}", file=sys.stderr)
    if result.resume_hint:
        print(f"wellzarr: {result.resume_hint}", file=sys.stderr)
    return code


# -- info and validate ------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from napari_wellzarr.storage.validation import describe_plate

    doc = describe_plate(args.plate)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"plate     {doc['plate']}")
    print(
        f"layout    {doc['rows']}x{doc['columns']} plate, OME-NGFF {doc['ngff_version']} "
        f"(zarr v{doc['zarr_format']}), {len(doc['wells'])} well(s)"
    )
    wells = doc["wells"]
    shown = " ".join(wells[:24]) + (f" ... ({len(wells)})" if len(wells) > 24 else "")
    print(f"wells     {shown or '-'}")
    if "axes" in doc:
        shapes = ", ".join(str(tuple(s)) for s in doc["well_shapes"])
        print(
            f"well      {doc['layout']} ({', '.join(doc['axes'])}) {shapes} {doc['dtype']}, "
            f"{doc['levels']} level(s), channels {doc['channels']}"
        )
        print(
            f"chunks    {tuple(doc['chunks'])}"
            + (f" in shards {tuple(doc['shards'])}" if doc["shards"] else "")
        )
        codecs = [c.get("name", c.get("id", "?")) for c in doc["filters"] + doc["compressors"]]
        print(f"codecs    {' + '.join(codecs) or 'none'}  {doc['compressors']}")
        print(f"files     {doc['mapped_files']} source file name(s) mapped")
    ratio = doc["compression_ratio"]
    if doc["disk_bytes"] is None:  # a remote plate: its objects are not listed
        print(f"size      {_mb(doc['raw_bytes'])} raw (remote: stored size not measured)")
        return EXIT_OK
    print(
        f"size      {_mb(doc['raw_bytes'])} raw, {_mb(doc['disk_bytes'])} on disk in "
        f"{doc['files']} file(s)" + (f", ratio {ratio}" if ratio else "")
    )
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from napari_wellzarr.storage.validation import check_plate

    if isinstance(args.plate, Path) and not args.plate.exists():
        raise _UsageError(f"{args.plate} does not exist")
    check = check_plate(args.plate, deep=args.deep)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": check.ok,
                    "spec": check.spec,
                    "problems": check.problems,
                    "warnings": check.warnings,
                },
                indent=2,
            )
        )
    else:
        for warning in check.warnings:
            print(f"warning: {warning}")
        for problem in check.problems:
            print(f"problem: {problem}")
        verdict = "valid" if check.ok else f"INVALID ({len(check.problems)} problem(s))"
        print(f"{args.plate}: {verdict}; spec: {check.spec or 'not checked'}")
    return EXIT_OK if check.ok else EXIT_INVALID


class _UsageError(Exception):
    """A command-line mistake found after parsing."""


def _path_or_url(text: str) -> Path | str:
    """A plate to read: a URL is kept as written (``Path`` would turn ``s3://`` into ``s3:/``)."""
    from napari_wellzarr.storage.locations import is_url

    return text if is_url(text) else Path(text)


def _source(text: str) -> Path | str:
    """A source to scan: a local folder, or an ``s3://`` URL (other URLs are refused)."""
    from napari_wellzarr.convert.srcfs import SOURCE_SCHEMES
    from napari_wellzarr.storage.locations import is_url, redact

    if not is_url(text):
        return Path(text)
    scheme = text.split(":", 1)[0].lower()
    if scheme not in SOURCE_SCHEMES:
        raise argparse.ArgumentTypeError(
            f"{redact(text)}: sources are read from local folders and s3:// URLs, not {scheme}://"
        )
    return text


def _local_dest(text: str) -> Path | str:
    """A plate to write: a local folder, or an ``s3://`` URL (other URLs are refused)."""
    from napari_wellzarr.errors import RemoteWriteError
    from napari_wellzarr.storage.locations import refuse_url, writable_url

    try:
        refuse_url(text, "a plate", s3_ok=True)
    except RemoteWriteError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text if writable_url(text) else Path(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wellzarr`` command; return its exit code."""
    args = _parser().parse_args(argv)
    commands = {"convert": _convert, "info": _info, "validate": _validate}
    try:
        return commands[args.command](args)
    except (WellZarrError, _UsageError) as err:
        print(f"wellzarr: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nwellzarr: interrupted; run again with --resume to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        print(f"wellzarr: failed: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
