"""Emits multi-service traces with the real OpenTelemetry Python SDK.

Three services (each with its own TracerProvider and OTLP exporter, as three processes would
have) handle a request: `web` calls `orders`, which calls `billing`; context crosses each
hop through W3C traceparent headers (inject → carrier dict → extract), exactly as HTTP
instrumentation does. One trace in each run fails in `billing` with a recorded exception.

Usage: emit_traces.py --protocol grpc|http --endpoint URL [--token T] [--traces N]
Prints one JSON line: {"traces": [{"trace_id": hex, "spans": n, "error": bool}, ...]}.
"""

import argparse
import json

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def provider(service, protocol, endpoint, token):
    headers = {"authorization": f"Bearer {token}"} if token else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers)
    p = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.0.0",
                                                 "k8s.namespace.name": "e2e"}))
    p.add_span_processor(BatchSpanProcessor(exporter))
    return p


def handle_in(tracer, name, carrier, kind=SpanKind.SERVER):
    """Starts a server span whose parent comes from the incoming headers."""
    ctx = propagate.extract(carrier)
    return tracer.start_as_current_span(name, context=ctx, kind=kind)


def call_out(tracer, name, attrs):
    """A client span; returns the headers the outgoing request would carry."""
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
    carrier = {}
    token = context.attach(trace.set_span_in_context(span))
    propagate.inject(carrier)
    context.detach(token)
    return span, carrier


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token")
    ap.add_argument("--traces", type=int, default=5)
    args = ap.parse_args()

    providers = {s: provider(s, args.protocol, args.endpoint, args.token) for s in ["web", "orders", "billing"]}
    web = providers["web"].get_tracer("e2e.web")
    orders = providers["orders"].get_tracer("e2e.orders")
    billing = providers["billing"].get_tracer("e2e.billing")
    out = []
    for n in range(args.traces):
        fail = n == 0
        with web.start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
                                       attributes={"http.request.method": "GET", "http.route": "/checkout",
                                                   "e2e.run": args.protocol}) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            client, headers = call_out(web, "POST", {"http.request.method": "POST", "server.address": "orders"})
            with handle_in(orders, "POST /orders", headers) as srv:
                srv.set_attribute("http.route", "/orders")
                srv.set_attribute("order.items", n + 1)
                with orders.start_as_current_span("INSERT orders", kind=SpanKind.CLIENT,
                                                  attributes={"db.system": "postgresql",
                                                              "db.query.text": "INSERT INTO orders VALUES ($1)"}):
                    pass
                bclient, bheaders = call_out(orders, "POST", {"http.request.method": "POST", "server.address": "billing"})
                with handle_in(billing, "POST /charge", bheaders) as charge:
                    if fail:
                        try:
                            raise ValueError("card declined")
                        except ValueError as e:
                            charge.record_exception(e)
                            charge.set_status(Status(StatusCode.ERROR, "card declined"))
                bclient.end()
            client.end()
        out.append({"trace_id": trace_id, "spans": 6, "error": fail})
    for p in providers.values():
        p.force_flush()
        p.shutdown()
    print(json.dumps({"traces": out}))


if __name__ == "__main__":
    main()
