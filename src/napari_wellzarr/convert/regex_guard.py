"""Matching a user's regular expression against file names in bounded time."""

from __future__ import annotations

import json
import math
import os
import selectors
import subprocess
import sys
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import WellNameError

if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

__all__ = ["PER_NAME_SECONDS", "Spans", "match_spans", "match_spans_bounded"]

#: Group name -> (start, end) in the matched name, for the groups that took part.
Spans = dict[str, tuple[int, int]]

#: Extra time budget per file name on top of the base timeout (seconds).
PER_NAME_SECONDS: Final = 0.001

_MATCHER: Final = """
import json, re, resource, sys
# The kernel ends this process after its CPU budget even when the parent, which kills it
# at its wall-clock budget, died first: a runaway pattern never outlives its caller long.
cpu = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
sys.stdout.write("+")  # started: the parent's clock for the budget starts now
sys.stdout.flush()
request = json.load(sys.stdin)
regex = re.compile(request["pattern"], request["flags"])
out = []
for name in request["names"]:
    m = regex.fullmatch(name)
    out.append(None if m is None else {
        g: list(m.span(g)) for g in regex.groupindex if m.group(g) is not None})
json.dump(out, sys.stdout)
"""
#: How long the child interpreter may take to start (a loaded machine), outside the budget.
_START_SECONDS: Final = 30.0


def match_spans(regex: re.Pattern[str], name: str) -> Spans | None:
    """Full-match ``name``; the spans of the named groups that took part, or ``None``."""
    match = regex.fullmatch(name)
    if match is None:
        return None
    return {g: match.span(g) for g in regex.groupindex if match.group(g) is not None}


def match_spans_bounded(
    pattern: str, flags: int, names: Sequence[str], timeout: float
) -> list[Spans | None]:
    """Full-match every name in a child interpreter, killed after its time budget.

    The budget is ``timeout + PER_NAME_SECONDS * len(names)`` seconds.

    Raises
    ------
    WellNameError
        The pattern overran its budget (catastrophic backtracking) or does not compile.
    """
    if not names:
        return []
    budget = timeout + PER_NAME_SECONDS * len(names)
    request = json.dumps({"pattern": pattern, "flags": int(flags), "names": list(names)})
    with subprocess.Popen(
        [sys.executable, "-I", "-c", _MATCHER, str(math.ceil(budget) + 2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            _wait_started(proc)
            stdout, stderr = proc.communicate(request, timeout=budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise WellNameError(
                f"pattern {pattern!r} took longer than {budget:.1f} s on {len(names)} file "
                "name(s) and was stopped: it backtracks catastrophically; avoid nested "
                "quantifiers such as (a+)+ or (.*)*"
            ) from None
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise WellNameError(f"pattern {pattern!r} failed to run: {last[0]}")
    raw = json.loads(done.stdout)
    return [None if r is None else {g: (int(a), int(b)) for g, (a, b) in r.items()} for r in raw]


def _wait_started(proc: subprocess.Popen[str]) -> None:
    """Wait for the child's start mark, so that its start-up is not counted in the budget.

    Read from the file descriptor itself: ``communicate`` reads the rest from it too,
    past any buffer of the text wrapper.  A child that died first (no mark, end of
    file) is left to ``communicate``, which collects its error.
    """
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:  # epoll: select() fails past fd 1023
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(_START_SECONDS)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, _START_SECONDS)
    os.read(proc.stdout.fileno(), 1)
