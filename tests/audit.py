"""Watch every file the whole process opens or lists (an audit hook) while a block runs.

``sys.addaudithook`` hooks cannot be removed: the one hook installed here records only
while an :class:`OpensOutside` block is active, from every thread (zarr reads in its own
event-loop thread), so hostile-metadata tests can assert that nothing outside the plate
was touched.

What may be opened outside the plate (the allowlist), and why:

* modules imported lazily by the code under test: a ``.py``/``.pyc``/extension file, a
  ``.pth`` file or a directory listing under a ``sys.path`` entry or the interpreter's
  prefixes (the import system reads and lists those, never data);
* ``/proc/`` and ``/sys/fs/cgroup/``: the memory probe (``MemAvailable``, cgroup limits)
  that bounds every allocating read;
* paths the test names itself (``allow=``): files the test made for the block.

Nothing else: a file beside the plate, in its parent, ``/etc``, the home directory or the
test's temporary directory is reported.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from types import TracebackType

EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
SYSTEM = ("/proc/", "/sys/fs/cgroup/")
MODULE_SUFFIXES = (*importlib.machinery.all_suffixes(), ".pyc", ".pth")

_lock = threading.Lock()
_recording: list[list[tuple[str, str]]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _recording or event not in EVENTS or not args:
        return
    target = args[0]
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if isinstance(target, str | os.PathLike):
        path = os.path.normpath(os.path.join(os.getcwd(), os.fspath(target)))
        with _lock:
            if _recording:
                _recording[-1].append((event, path))


sys.addaudithook(_hook)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _import_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(os.path.abspath(p) for p in sys.path if p and os.path.isdir(p))
    return sorted(roots)


class OpensOutside:
    """Every file opened or directory listed outside ``root`` (and the allowlist) in the block.

    Use as ``with OpensOutside(root) as outside: ...`` then ``assert not outside``; the
    list fills when the block exits.  Paths are compared as given and as resolved
    (``realpath``), so a symlink out of the plate counts as outside.
    """

    def __init__(self, root: Path | str, allow: Iterable[Path | str] = ()) -> None:
        self.roots = {os.path.abspath(root), os.path.realpath(root)}
        self.allow = {os.path.abspath(a) for a in allow}
        self.seen: list[tuple[str, str]] = []
        self.outside: list[str] = []

    def __enter__(self) -> list[str]:
        with _lock:
            _recording.append(self.seen)
        return self.outside

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with _lock:
            _recording.remove(self.seen)
        imports = _import_roots()
        for event, path in self.seen:
            if not self.allowed(event, path, imports) and path not in self.outside:
                self.outside.append(path)

    def allowed(self, event: str, path: str, imports: list[str]) -> bool:
        """Whether opening/listing ``path`` is inside the plate or on the allowlist."""
        real = os.path.realpath(path)
        if _under(path, self.roots) and _under(real, self.roots):
            return True
        if _under(path, self.allow) or path.startswith(SYSTEM):
            return True
        if not _under(real, imports):
            return False
        return event != "open" or real.endswith(MODULE_SUFFIXES)
