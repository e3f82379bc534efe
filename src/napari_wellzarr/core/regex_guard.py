"""Matching a user's regular expression against file names in bounded time.

Python's :mod:`re` has no timeout, and a pattern with nested quantifiers such as
``(a+)+b`` backtracks exponentially: one unlucky file name can hang a conversion for
ever.  A user's pattern therefore runs in a separate interpreter (``python -I -c``, the
standard library only, ~20 ms to start) that is killed when it overruns its time budget;
it sends back the *spans* of the named groups, so the calling process never runs the
pattern itself.  Built-in schemes (written and tested here) run in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Final

from .errors import WellNameError

if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

__all__ = ["PER_NAME_SECONDS", "Spans", "match_spans", "match_spans_bounded"]

#: Group name -> (start, end) in the matched name, for the groups that took part.
Spans = dict[str, tuple[int, int]]

#: Extra time budget per file name on top of the base timeout (seconds).
PER_NAME_SECONDS: Final = 0.001

_MATCHER: Final = """
import json, re, sys
request = json.load(sys.stdin)
regex = re.compile(request["pattern"], request["flags"])
out = []
for name in request["names"]:
    m = regex.fullmatch(name)
    out.append(None if m is None else {
        g: list(m.span(g)) for g in regex.groupindex if m.group(g) is not None})
json.dump(out, sys.stdout)
"""


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
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _MATCHER],
            input=request,
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WellNameError(
            f"pattern {pattern!r} took longer than {budget:.1f} s on {len(names)} file name(s) "
            "and was stopped: it backtracks catastrophically; avoid nested quantifiers such "
            "as (a+)+ or (.*)*"
        ) from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise WellNameError(f"pattern {pattern!r} failed to run: {last[0]}")
    raw = json.loads(done.stdout)
    return [None if r is None else {g: (int(a), int(b)) for g, (a, b) in r.items()} for r in raw]
