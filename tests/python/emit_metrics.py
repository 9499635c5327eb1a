"""Emits metrics with the real OpenTelemetry Python SDK: a counter, an up-down counter, a
histogram and an observable gauge, from two services — `checkout` exporting cumulative
temporality over gRPC, `payments` exporting delta temporality (counter and histogram) over
HTTP. Each of six rounds records, then exports (force_flush), half a second apart.

Usage: emit_metrics.py --grpc HOST:PORT --http URL
Prints one JSON line with what was recorded per service: request totals, the final queue
depth and temperature, the median Prometheus would compute from the final buckets, and the
trace and span ids of the one observation recorded inside a sampled span (the SDK's default
trace-based exemplar filter makes it an exemplar; the span is exported over gRPC too).
"""

import argparse
import json
import random
import time

from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.metrics import Observation

# Only the observation made in a span lands in the bucket (2500, 5000].
TRACED_VALUE = 4321.0

BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]


def prometheus_quantile(q, observations):
    """Prometheus's histogram_quantile over the SDK's default buckets."""
    counts = [sum(1 for o in observations if o <= b) for b in BOUNDS] + [len(observations)]
    bounds = BOUNDS + [float("inf")]
    rank = q * counts[-1]
    i = next(k for k, c in enumerate(counts) if c >= rank)
    if i == len(bounds) - 1:
        return bounds[-2]
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    start = bounds[i - 1] if i > 0 else 0
    count = counts[i] - (counts[i - 1] if i > 0 else 0)
    rank -= counts[i - 1] if i > 0 else 0
    return start + (bounds[i] - start) * (rank / count)


def resource(service):
    return Resource.create({"service.name": service, "service.instance.id": f"{service}-1",
                            "deployment.environment": "e2e"})


def provider(service, exporter):
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader], resource=resource(service))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--http", required=True)
    args = ap.parse_args()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    providers = {
        "checkout": provider("checkout", GrpcExporter(endpoint=args.grpc, insecure=True)),
        "payments": provider("payments", HttpExporter(endpoint=f"{args.http}/v1/metrics",
                                                      preferred_temporality=delta)),
    }
    rng = random.Random(7)
    out = {}
    for name, p in providers.items():
        meter = p.get_meter("e2e", "1.0")
        state = {"temp": 20.0}
        requests = meter.create_counter("app.requests", unit="{request}", description="Requests handled")
        queue = meter.create_up_down_counter("app.queue.depth", description="Jobs waiting")
        latency = meter.create_histogram("http.server.request.duration", unit="ms", description="Latency")
        meter.create_observable_gauge("app.temperature", unit="Cel",
                                      callbacks=[lambda _o, s=state: [Observation(s["temp"])]])
        out[name] = {"requests": {}, "observations": [], "queue": 0}
    tracers = {}
    for name in providers:
        tp = TracerProvider(resource=resource(name))
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.grpc, insecure=True)))
        tracers[name] = tp
    for round_ in range(6):
        for name, p in providers.items():
            meter = p.get_meter("e2e", "1.0")
            rec = out[name]
            requests = meter.create_counter("app.requests", unit="{request}", description="Requests handled")
            queue = meter.create_up_down_counter("app.queue.depth", description="Jobs waiting")
            latency = meter.create_histogram("http.server.request.duration", unit="ms", description="Latency")
            for route in ["/cart", "/pay"]:
                n = rng.randint(1, 20)
                requests.add(n, {"http.route": route})
                rec["requests"][route] = rec["requests"].get(route, 0) + n
            for _ in range(rng.randint(5, 30)):
                v = round(rng.uniform(1, 900), 1)
                latency.record(v, {"http.route": "/cart"})
                rec["observations"].append(v)
            if round_ == 5:
                with tracers[name].get_tracer("e2e").start_as_current_span("checkout request") as span:
                    latency.record(TRACED_VALUE, {"http.route": "/cart"})
                    ctx = span.get_span_context()
                rec["observations"].append(TRACED_VALUE)
                rec["trace_id"] = format(ctx.trace_id, "032x")
                rec["span_id"] = format(ctx.span_id, "016x")
            d = rng.randint(-3, 5)
            queue.add(d)
            rec["queue"] += d
            p.force_flush()
        time.sleep(0.5)
    for name, p in providers.items():
        p.shutdown()
        tracers[name].shutdown()
    result = {}
    for name, rec in out.items():
        result[name] = {
            "requests": rec["requests"],
            "total": sum(rec["requests"].values()),
            "queue": rec["queue"],
            "temperature": 20.0,
            "median": prometheus_quantile(0.5, rec["observations"]),
            "count": len(rec["observations"]),
            "trace_id": rec["trace_id"],
            "span_id": rec["span_id"],
            "traced_value": TRACED_VALUE,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
