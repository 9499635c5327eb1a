"""Replays the requests Grafana's Tempo data source makes, and decodes the answers the way it does.

- Save & test: GET /api/echo must answer 200.
- Trace by id: GET /api/v2/traces/{id}?start=&end= with Accept: application/protobuf; the body is
  a TraceByIDResponse whose field 1 is the trace, decoded here with the OpenTelemetry proto
  classes the Python SDK ships (TracesData has Tempo's Trace wire shape).
- Search: GET /api/search?q=&limit=&spss=&start=&end= with Accept: application/json, validated
  against a strict JSON schema of Tempo's SearchResponse (unknown fields fail, as Grafana's
  jsonpb decoder fails on them).
- Autocomplete: /api/v2/search/tags and /api/v2/search/tag/{tag}/values.

Usage: grafana_tempo.py --url http://host:port/tempo --trace-id HEX --query TRACEQL
                        --start S --end E [--tag TAG ...]
Prints one JSON line with what was decoded.
"""

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
from google.protobuf.internal.decoder import _DecodeVarint
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

HEADERS = {"User-Agent": "Grafana/12.0.0", "X-Grafana-Org-Id": "1"}


def get(url, accept):
    req = urllib.request.Request(url, headers={**HEADERS, "Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def strict(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


U64 = {"type": "string", "pattern": "^[0-9]+$"}
U32 = {"type": "integer", "minimum": 0}
ANY_VALUE = strict({
    "stringValue": {"type": "string"}, "boolValue": {"type": "boolean"}, "intValue": U64 | {"pattern": "^-?[0-9]+$"},
    "doubleValue": {"type": ["number", "string"]}, "bytesValue": {"type": "string"},
    "arrayValue": {"type": "object"}, "kvlistValue": {"type": "object"},
})
KEY_VALUE = strict({"key": {"type": "string"}, "value": ANY_VALUE}, ["key"])
SPAN = strict({
    "spanID": {"type": "string", "pattern": "^[0-9a-f]{16}$"}, "name": {"type": "string"},
    "startTimeUnixNano": U64, "durationNanos": U64, "attributes": {"type": "array", "items": KEY_VALUE},
}, ["spanID", "startTimeUnixNano"])
SPAN_SET = strict({"spans": {"type": "array", "items": SPAN}, "matched": U32,
                   "attributes": {"type": "array", "items": KEY_VALUE}})
# Tempo's SearchResponse as the data source's vendored proto knows it (SearchMetrics fields 1-7).
SEARCH_RESPONSE = strict({
    "traces": {"type": "array", "items": strict({
        "traceID": {"type": "string", "pattern": "^[0-9a-f]+$"}, "rootServiceName": {"type": "string"},
        "rootTraceName": {"type": "string"}, "startTimeUnixNano": U64, "durationMs": U32,
        "spanSet": SPAN_SET, "spanSets": {"type": "array", "items": SPAN_SET},
        "serviceStats": {"type": "object", "additionalProperties": strict({"spanCount": U32, "errorCount": U32})},
    }, ["traceID", "startTimeUnixNano"])},
    "metrics": strict({
        "inspectedTraces": U32, "inspectedBytes": U64, "totalBlocks": U32, "completedJobs": U32,
        "totalJobs": U32, "totalBlockBytes": U64, "inspectedSpans": U64,
    }),
})
TAGS_V2 = strict({
    "scopes": {"type": "array", "items": strict({"name": {"type": "string"},
                                                 "tags": {"type": "array", "items": {"type": "string"}}}, ["name"])},
    "metrics": {"type": "object"},
})
TAG_VALUES_V2 = strict({
    "tagValues": {"type": "array", "items": strict({
        "type": {"enum": ["string", "int", "float", "bool", "duration", "keyword"]}, "value": {"type": "string"},
    }, ["type", "value"])},
    "metrics": {"type": "object"},
})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--trace-id", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--start", required=True)
    ap.add_argument("--end", required=True)
    ap.add_argument("--tag", action="append", default=[])
    a = ap.parse_args()
    out = {}
    window = f"start={a.start}&end={a.end}"

    status, _, _ = get(f"{a.url}/api/echo", "*/*")
    assert status == 200, f"echo answered {status}"

    status, ctype, body = get(f"{a.url}/api/v2/traces/{a.trace_id}?{window}", "application/protobuf")
    assert status == 200 and ctype.startswith("application/protobuf"), (status, ctype, body[:200])
    assert body[0] == 0x0A, "TraceByIDResponse field 1 (trace)"
    length, pos = _DecodeVarint(body, 1)
    trace = TracesData()
    trace.ParseFromString(body[pos:pos + length])
    spans = [(rs, s) for rs in trace.resource_spans for ss in rs.scope_spans for s in ss.spans]
    services = sorted({kv.value.string_value for rs, _ in spans for kv in rs.resource.attributes
                       if kv.key == "service.name"})
    assert all(s.trace_id.hex() == a.trace_id for _, s in spans)
    out["trace"] = {"spans": len(spans), "services": services,
                    "errors": sum(1 for _, s in spans if s.status.code == 2)}

    q = urllib.parse.quote(a.query)
    status, ctype, body = get(f"{a.url}/api/search?q={q}&limit=20&spss=3&{window}", "application/json")
    assert status == 200, (status, body[:300])
    search = json.loads(body)
    jsonschema.validate(search, SEARCH_RESPONSE)
    out["search"] = [{"traceID": t["traceID"], "rootServiceName": t["rootServiceName"],
                      "matched": t["spanSets"][0].get("matched", 0),
                      "spans": [s.get("name") for s in t["spanSets"][0]["spans"]]}
                     for t in search.get("traces", [])]

    status, _, body = get(f"{a.url}/api/v2/search/tags?{window}", "application/json")
    assert status == 200, (status, body[:300])
    tags = json.loads(body)
    jsonschema.validate(tags, TAGS_V2)
    out["tags"] = {s["name"]: s.get("tags", []) for s in tags["scopes"]}

    out["values"] = {}
    for tag in a.tag:
        status, _, body = get(f"{a.url}/api/v2/search/tag/{urllib.parse.quote(tag)}/values?{window}",
                              "application/json")
        assert status == 200, (tag, status, body[:300])
        values = json.loads(body)
        jsonschema.validate(values, TAG_VALUES_V2)
        out["values"][tag] = [[v["type"], v["value"]] for v in values.get("tagValues", [])]

    status, _, body = get(f"{a.url}/api/search?q={urllib.parse.quote('{ .a = }')}&{window}", "application/json")
    out["bad_query"] = {"status": status, "body": body.decode()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
