"""obstore vs fsspec for the requests a remote plate makes: documents, then byte ranges of shards.

    python bench/bench_stores.py        # 20 ms per request, on the tests' Range HTTP server

Both libraries read the same files from the same local server in the same run: 60
documents one after the other (opening metadata), and 384 byte ranges of 384 shard files at
once (one tile per well of a 384-well first screen), through each library's own
concurrency (obstore: threads on its Rust client; fsspec: ``cat_ranges`` on its event loop).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
LATENCY = 0.02
N_DOCS, N_SHARDS, SHARD_BYTES, RANGE_BYTES = 60, 384, 200_000, 60_000


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    import fsspec
    import obstore
    from obstore.store import HTTPStore
    from tests.remote.servers import RangeServer

    folder = Path(tempfile.mkdtemp(prefix="wellzarr-stores-"))
    for i in range(N_DOCS):
        (folder / f"doc{i}.json").write_bytes(b'{"a": 1}' * 50)
    payload = os.urandom(SHARD_BYTES)
    for i in range(N_SHARDS):
        (folder / f"shard{i}").write_bytes(payload)
    rows = []
    with RangeServer(folder, latency=LATENCY) as server:
        store = HTTPStore.from_url(server.url, client_options={"allow_http": True})
        fs = fsspec.filesystem("http")

        def ob_docs() -> None:
            for i in range(N_DOCS):
                bytes(obstore.get(store, f"doc{i}.json").bytes())

        def fs_docs() -> None:
            for i in range(N_DOCS):
                fs.cat_file(f"{server.url}/doc{i}.json")

        def ob_ranges() -> None:
            def one(i: int) -> bytes:
                return bytes(obstore.get_range(store, f"shard{i}", start=1000, length=RANGE_BYTES))

            with ThreadPoolExecutor(48) as pool:
                assert all(len(b) == RANGE_BYTES for b in pool.map(one, range(N_SHARDS)))

        def fs_ranges() -> None:
            paths = [f"{server.url}/shard{i}" for i in range(N_SHARDS)]
            got = fs.cat_ranges(paths, [1000] * N_SHARDS, [1000 + RANGE_BYTES] * N_SHARDS)
            assert all(len(b) == RANGE_BYTES for b in got)

        for what, ob, fsp in (("documents", ob_docs, fs_docs), ("ranges", ob_ranges, fs_ranges)):
            times = {}
            for name, job in (("obstore", ob), ("fsspec", fsp)):
                job()  # warm: connections, imports
                server.reset()
                t0 = time.perf_counter()
                job()
                times[name] = (time.perf_counter() - t0, server.requests)
            rows.append((what, times))
    print(f"| requests ({LATENCY * 1000:.0f} ms each) | obstore | fsspec | fsspec / obstore |")
    print("| --- | ---: | ---: | ---: |")
    for what, times in rows:
        (ot, on), (ft, fn) = times["obstore"], times["fsspec"]
        label = (
            f"{N_DOCS} documents, in turn"
            if what == "documents"
            else (f"{N_SHARDS} ranges of {RANGE_BYTES // 1000} kB in {N_SHARDS} objects, at once")
        )
        print(f"| {label} | {ot:.2f} s ({on} req) | {ft:.2f} s ({fn} req) | {ft / ot:.2f}x |")


if __name__ == "__main__":
    main()
