"""ClickHouse baseline (through chdb): the same log lines in a MergeTree table ordered by
service and time, the body compressed with zstd and indexed with a token bloom filter, as a
ClickHouse user would store logs; its size on disk and the same searches Loupe answers.

Reads a JSON job on stdin: {"lines": path of a JSON-lines file of {"service", "time" (unix
ns), "body"}, "needles": [token...], "term": token, "start": ns, "end": ns, "limit": n,
"repeat": n}, and prints {"stored_bytes", "rows", "load_s", "needle_ms": [...],
"term_ms": [...]}: warm timings (each query runs once untimed first, as Loupe's are taken
warm). A needle query is `hasToken(body, needle)` in the range, newest `limit` first; the term
query the same for the common term.
"""

import json
import shutil
import sys
import tempfile
import time

from chdb import session


def main():
    job = json.load(sys.stdin)
    data = tempfile.mkdtemp(prefix="loupe-chdb-")
    try:
        s = session.Session(data)
        s.query("CREATE DATABASE IF NOT EXISTS bench")
        s.query(
            "CREATE TABLE bench.logs (service LowCardinality(String), time DateTime64(9), "
            "body String CODEC(ZSTD(3)), INDEX tokens body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1) "
            "ENGINE = MergeTree ORDER BY (service, time)"
        )
        t = time.perf_counter()
        s.query(
            "INSERT INTO bench.logs SELECT service, fromUnixTimestamp64Nano(time), body FROM "
            f"file('{job['lines']}', JSONEachRow, 'service String, time Int64, body String')"
        )
        s.query("OPTIMIZE TABLE bench.logs FINAL")
        load_s = time.perf_counter() - t
        stored, rows = json.loads(
            str(
                s.query(
                    "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts "
                    "WHERE database = 'bench' AND table = 'logs' AND active",
                    "JSONCompact",
                )
            )
        )["data"][0]
        start, end, limit = int(job["start"]), int(job["end"]), int(job["limit"])

        def search(token):
            q = (
                "SELECT time, service, body FROM bench.logs WHERE hasToken(body, '%s') "
                "AND time BETWEEN fromUnixTimestamp64Nano(toInt64(%d)) AND fromUnixTimestamp64Nano(toInt64(%d)) "
                "ORDER BY time DESC LIMIT %d" % (token, start, end, limit)
            )
            s.query(q, "JSONCompact")
            t = time.perf_counter()
            found = json.loads(str(s.query(q, "JSONCompact")))["data"]
            ms = (time.perf_counter() - t) * 1000
            if not found:
                print(f"chdb found nothing for {token}", file=sys.stderr)
                sys.exit(1)
            return ms

        needle_ms = [search(n) for n in job["needles"]]
        term_ms = [search(job["term"]) for _ in range(int(job["repeat"]))]
        print(json.dumps({"stored_bytes": int(stored), "rows": int(rows), "load_s": load_s,
                          "needle_ms": needle_ms, "term_ms": term_ms}))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
