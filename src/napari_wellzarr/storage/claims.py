"""Who converts into a destination: a claim object created only where none exists."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import DestinationClaimedError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.locations import RemoteLocation

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CLAIM_NAME", "Claim", "claim", "read_claim", "release"]

#: The claim's name in the destination (hidden: never part of the plate).
CLAIM_NAME: Final = ".wellzarr-claim.json"


@dataclass(frozen=True)
class Claim:
    """A conversion run's hold on its destination."""

    dest: Path | RemoteLocation
    run: str
    host: str
    pid: int
    started: float

    def to_bytes(self) -> bytes:
        """The claim document (compact: on a folder it is a symlink's target)."""
        doc = {"run": self.run, "host": self.host, "pid": self.pid, "started": self.started}
        return json.dumps(doc, separators=(",", ":")).encode()

    def describe(self) -> str:
        """``run <id> (host <h>, pid <n>, started <UTC time>)`` for messages."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"run {self.run} (host {self.host}, pid {self.pid}, started {when})"


def read_claim(dest: Path | RemoteLocation) -> Claim | None:
    """The claim on ``dest``, or ``None`` (none, or unreadable: a half-written one)."""
    try:
        if isinstance(dest, RemoteLocation):
            (dest / CLAIM_NAME).forget()  # another client may have replaced it
            raw = (dest / CLAIM_NAME).read(1 << 16)
            if raw is None:
                return None
        else:
            raw = os.fsencode(os.readlink(dest / CLAIM_NAME))
        doc = json.loads(raw)
        run, host, pid, started = doc["run"], doc["host"], doc["pid"], doc["started"]
        return Claim(dest, str(run), str(host), int(pid), float(started))
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError):
        return None


def claim(dest: Path | RemoteLocation, run: str, *, take_over: bool = False) -> Claim:
    """Claim ``dest`` for the conversion ``run``: only one run converts into it at a time.

    The claim is created only where none exists (S3: a conditional put,
    ``If-None-Match: *``; a folder: a symlink whose target is the claim document, made
    with ``symlink()``, which fails when the name exists, NFS included, and which uses
    no data block), so of two runs that claim at once exactly one wins.  ``take_over``
    replaces the claim of an earlier run (resuming a conversion whose client was
    killed).  A claim of a dead process of this host is taken over too (a folder only:
    pids of other hosts mean nothing here).

    Raises
    ------
    DestinationClaimedError
        Another run holds ``dest``; the message names it and what to do.
    """
    mine = Claim(dest, run, socket.gethostname(), os.getpid(), time.time())
    if isinstance(dest, RemoteLocation):
        target = dest / CLAIM_NAME
        try:
            target.write(mine.to_bytes(), create=not take_over)
            return mine
        except FileExistsError:
            pass
    else:
        dest.mkdir(parents=True, exist_ok=True)
        text = mine.to_bytes().decode()
        try:
            os.symlink(text, dest / CLAIM_NAME)
            return mine
        except FileExistsError:
            held = read_claim(dest)
            if take_over or held is None or _dead_here(held):
                spare = dest / f"{CLAIM_NAME}.{run}.tmp"
                os.symlink(text, spare)
                os.replace(spare, dest / CLAIM_NAME)  # (a folder: renames are fine)
                return mine
    held = read_claim(dest)
    other = held.describe() if held is not None else "another run"
    raise DestinationClaimedError(
        f"{dest} is being converted by {other}: wait for it to finish, or if that "
        "conversion was killed, complete it with --resume (resume=True), which takes its place"
    )


def _dead_here(held: Claim) -> bool:
    """Whether ``held`` is a claim of a process of this host that no longer runs."""
    if held.host != socket.gethostname():
        return False
    try:
        os.kill(held.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return fsio.is_zombie(held.pid)


def release(mine: Claim) -> None:
    """Remove the claim if it is still ``mine`` (a resume may have taken it over)."""
    held = read_claim(mine.dest)
    if held is None or held.run != mine.run:
        return
    if isinstance(mine.dest, RemoteLocation):
        mine.dest.delete([CLAIM_NAME])
    else:
        with contextlib.suppress(FileNotFoundError):
            (mine.dest / CLAIM_NAME).unlink()
