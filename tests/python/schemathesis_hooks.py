"""Schemathesis hooks for the native API's OpenAPI document: values of the custom string
format `traceql` (the `q` parameter) are generated as valid TraceQL, built from typed
comparisons, `&&`/`||`, spanset operators and a pipeline stage. Invalid TraceQL is a 400 by
design; the negative phases still send arbitrary strings.

Used by tests/e2e/openapi.rs through SCHEMATHESIS_HOOKS.
"""

import json

import schemathesis
from hypothesis import strategies as st

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-", min_size=0, max_size=12)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=16)
ATTRS = st.sampled_from([
    ".http.route", "span.http.request.method", "resource.service.name", ".service.name",
    'span."my attr"', "resource.k8s.pod.name", "event.exception.type", "link.reason", ".order.items",
])
DURATIONS = st.sampled_from(["0ns", "5us", "1ms", "100ms", "1.5s", "2m", "1h"])
CMP = st.sampled_from(["=", "!=", ">", ">=", "<", "<="])


def quoted(s):
    return json.dumps(s, ensure_ascii=False)


comparison = st.one_of(
    st.builds(lambda f, op, v: f"{f} {op} {quoted(v)}", st.sampled_from(["name", "statusMessage", "rootName",
                                                                            "rootServiceName", "span:name"]),
              st.sampled_from(["=", "!="]), TEXT),
    st.builds(lambda f, op, w: f"{f} {op} {quoted(w + '.*')}", st.sampled_from(["name", ".http.route"]),
              st.sampled_from(["=~", "!~"]), WORD),
    st.builds(lambda op, v: f"status {op} {v}", st.sampled_from(["=", "!="]), st.sampled_from(["error", "ok", "unset"])),
    st.builds(lambda op, v: f"kind {op} {v}", st.sampled_from(["=", "!="]),
              st.sampled_from(["server", "client", "internal", "producer", "consumer", "unspecified"])),
    st.builds(lambda f, op, d: f"{f} {op} {d}", st.sampled_from(["duration", "traceDuration", "span:duration"]), CMP,
              DURATIONS),
    st.builds(lambda a, op, v: f"{a} {op} {quoted(v)}", ATTRS, CMP, TEXT),
    st.builds(lambda a, op, n: f"{a} {op} {n}", ATTRS, CMP, st.integers(-10**6, 10**6)),
    st.builds(lambda a, op, b: f"{a} {op} {str(b).lower()}", ATTRS, st.sampled_from(["=", "!="]), st.booleans()),
    st.builds(lambda a, op: f"{a} {op} nil", ATTRS, st.sampled_from(["=", "!="])),
)
condition = st.lists(comparison, min_size=1, max_size=3).flatmap(
    lambda cs: st.lists(st.sampled_from(["&&", "||"]), min_size=len(cs) - 1, max_size=len(cs) - 1).map(
        lambda ops: " ".join([cs[0]] + [f"{o} {c}" for o, c in zip(ops, cs[1:])])))
spanset = st.one_of(st.just("{}"), condition.map(lambda c: "{ " + c + " }"))
combined = st.one_of(
    spanset,
    st.builds(lambda a, op, b: f"{a} {op} {b}", spanset, st.sampled_from(["&&", "||", ">", ">>"]), spanset),
)
stage = st.one_of(
    st.builds(lambda op, n: f"count() {op} {n}", CMP, st.integers(0, 50)),
    st.builds(lambda f, op, d: f"{f}(duration) {op} {d}", st.sampled_from(["avg", "min", "max", "sum"]), CMP, DURATIONS),
    st.just("select(span.http.route, resource.service.name)"),
)
traceql = st.one_of(combined, st.builds(lambda q, s: f"{q} | {s}", combined, stage))

schemathesis.openapi.format("traceql", traceql)
