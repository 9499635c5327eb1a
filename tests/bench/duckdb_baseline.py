"""DuckDB baseline: the same lookups Loupe answers, over the very Parquet files Loupe wrote.

Reads a JSON job on stdin: {"files": [...], "trace_ids": [hex...],
"search_lists": [[{"sql_ids": ..., "start": ns, "end": ns}, ...], ...], "repeat": n}, where
sql_ids selects the ids of the matching traces (two ? for start and end), and prints
{"trace_by_id_ms": [...], "search_ms": [[...], ...]}: warm timings (each query runs once
untimed first, so both sides are measured warm); a search reads its traces' spans whole.
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
    for searches in job["search_lists"]:
        timings = []
        for s in searches:
            q = "SELECT * FROM spans WHERE trace_id IN (" + s["sql_ids"] + ")"
            args = [s["start"], s["end"]]
            for _ in range(job.get("repeat", 3)):
                con.execute(q, args).fetchall()
                t = time.perf_counter()
                con.execute(q, args).fetchall()
                timings.append((time.perf_counter() - t) * 1000)
        search.append(timings)
    print(json.dumps({"trace_by_id_ms": by_id, "search_ms": search}))


if __name__ == "__main__":
    main()
