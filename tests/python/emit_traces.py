"""Emits multi-service traces with the real OpenTelemetry Python SDK.

Three services (each with its own TracerProvider and OTLP exporter, as three processes would
have) handle a request: `web` calls `orders`, which calls `billing`; context crosses each
hop through W3C traceparent headers (inject → carrier dict → extract), exactly as HTTP
instrumentation does. One trace in each run fails in `billing` with a recorded exception.

With --logs, each service also logs through the SDK's logging handler (an OTLP
LoggerProvider per service), inside its spans, so each record carries the span's context: web
logs the checkout (INFO), billing logs the failed charge (ERROR, with http.status_code 500),
(a JSON line with its own level and status), and orders logs a plain line that carries its context only in its text (a `traceparent`, as a
service without a log SDK writes to stdout), with no trace context of its own.

Usage: emit_traces.py --protocol grpc|http --endpoint URL [--token T] [--traces N] [--logs]
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


def log_provider(service, protocol, endpoint, token):
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    headers = {"authorization": f"Bearer {token}"} if token else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers)
    p = LoggerProvider(resource=Resource.create({"service.name": service, "k8s.namespace.name": "e2e"}))
    p.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return p


def python_logger(service, provider):
    """A standard library logger whose records go to `provider` (as the SDK's handler does)."""
    import logging

    from opentelemetry.sdk._logs import LoggingHandler

    log = logging.getLogger(f"e2e.{service}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    return log


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


class _detached:
    """Runs a block with no current span (so a log record gets no context from the SDK)."""

    def __enter__(self):
        self.token = context.attach(context.Context())

    def __exit__(self, *exc):
        context.detach(self.token)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token")
    ap.add_argument("--traces", type=int, default=5)
    ap.add_argument("--logs", action="store_true")
    args = ap.parse_args()

    log_providers = {}
    loggers = {}
    if args.logs:
        log_providers = {s: log_provider(s, args.protocol, args.endpoint, args.token)
                         for s in ["web", "orders", "billing"]}
        loggers = {s: python_logger(s, p) for s, p in log_providers.items()}

    def log(service, level, msg, **attrs):
        if service in loggers:
            getattr(loggers[service], level)(msg, extra=attrs)

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
            log("web", "info", f"checkout started run={args.protocol} n={n}", **{"e2e.run": args.protocol})
            client, headers = call_out(web, "POST", {"http.request.method": "POST", "server.address": "orders"})
            with handle_in(orders, "POST /orders", headers) as srv:
                srv.set_attribute("http.route", "/orders")
                srv.set_attribute("order.items", n + 1)
                with orders.start_as_current_span("INSERT orders", kind=SpanKind.CLIENT,
                                                  attributes={"db.system": "postgresql",
                                                              "db.query.text": "INSERT INTO orders VALUES ($1)"}) as ins:
                    if loggers:
                        # A plain line: the context only in its text, none on the record.
                        sc = ins.get_span_context()
                        parent = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-01"
                        with _detached():
                            log("orders", "info", f"order stored run={args.protocol} traceparent={parent}")
                bclient, bheaders = call_out(orders, "POST", {"http.request.method": "POST", "server.address": "billing"})
                with handle_in(billing, "POST /charge", bheaders) as charge:
                    if fail:
                        try:
                            raise ValueError("card declined")
                        except ValueError as e:
                            charge.record_exception(e)
                            charge.set_status(Status(StatusCode.ERROR, "card declined"))
                            # A JSON line, as services that log JSON write them.
                            log("billing", "error",
                                json.dumps({"msg": "card declined", "run": args.protocol,
                                            "level": "error", "status": 502}),
                                **{"http.status_code": 500, "e2e.run": args.protocol})
                bclient.end()
            client.end()
        out.append({"trace_id": trace_id, "spans": 6, "error": fail})
    for p in list(providers.values()) + list(log_providers.values()):
        p.force_flush()
        p.shutdown()
    print(json.dumps({"traces": out}))


if __name__ == "__main__":
    main()
