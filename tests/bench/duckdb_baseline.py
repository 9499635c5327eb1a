"""DuckDB baseline: the same lookups Loupe answers, over the very Parquet files Loupe wrote.

Reads a JSON job on stdin: {"files": [...], "trace_ids": [hex...], "searches": [{"sql_where": ..., "start": ns, "end": ns}], "repeat": n}
and prints {"trace_by_id_ms": [...], "search_ms": [...]}: one warm timing per lookup (each
lookup runs once untimed first, so both sides are measured warm).
"""

import json
import sys
import time

import duckdb


def main():
    job = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    files = job["files"]
    con.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet({json.dumps(files)})")
    by_id = []
    for tid in job["trace_ids"]:
        q = "SELECT * FROM spans WHERE trace_id = unhex(?)"
        con.execute(q, [tid]).fetchall()
        t = time.perf_counter()
        rows = con.execute(q, [tid]).fetchall()
        by_id.append((time.perf_counter() - t) * 1000)
        if not rows:
            print(f"trace {tid} not found by duckdb", file=sys.stderr)
            sys.exit(1)
    search = []
    for s in job["searches"]:
        q = (
            "SELECT * FROM spans WHERE trace_id IN ("
            " SELECT trace_id FROM spans WHERE " + s["sql_where"] +
            " AND epoch_ns(start_time) BETWEEN ? AND ?"
            " GROUP BY trace_id ORDER BY max(start_time) DESC LIMIT 20)"
        )
        args = [s["start"], s["end"]]
        for _ in range(job.get("repeat", 3)):
            con.execute(q, args).fetchall()
            t = time.perf_counter()
            con.execute(q, args).fetchall()
            search.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"trace_by_id_ms": by_id, "search_ms": search}))


if __name__ == "__main__":
    main()
