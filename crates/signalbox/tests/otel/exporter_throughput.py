"""How fast the official OpenTelemetry Python SDK exports GenAI spans over OTLP/HTTP
(protobuf), to signalbox and to a sink that only reads the body and answers 200.

If signalbox is not the bottleneck, both rates are about the same: the exporter's own
encoding and HTTP work limits it. Prints one JSON object.

    python exporter_throughput.py --endpoint http://127.0.0.1:8080/v1/traces --key sb_… --spans 50000
"""

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")]


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def export(endpoint, headers, spans):
    """Spans per second from the first span started to the last one exported."""
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=30)
    provider = TracerProvider(resource=Resource.create({"service.name": "throughput"}))
    processor = BatchSpanProcessor(
        exporter, max_queue_size=spans, max_export_batch_size=512, schedule_delay_millis=50
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("throughput")
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for n in range(spans):
        provider_name, model = MODELS[n % len(MODELS)]
        with tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", provider_name)
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.conversation.id", f"{run}-{n % 100}")
            span.set_attribute("gen_ai.usage.input_tokens", 100 + n % 900)
            span.set_attribute("gen_ai.usage.output_tokens", 20 + n % 300)
    created = time.perf_counter()
    if not processor.force_flush(timeout_millis=300_000):
        raise SystemExit("flush timed out")
    done = time.perf_counter()
    provider.shutdown()
    return {
        "spans": spans,
        "create_s": round(created - started, 3),
        "total_s": round(done - started, 3),
        "spans_per_s": round(spans / (done - started)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--spans", type=int, default=50_000)
    args = ap.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    result = {
        "sink": export(sink_url, {}, args.spans),
        "signalbox": export(args.endpoint, {"authorization": f"Bearer {args.key}"}, args.spans),
    }
    result["ratio_signalbox_to_sink"] = round(
        result["signalbox"]["spans_per_s"] / result["sink"]["spans_per_s"], 3
    )
    print(json.dumps(result))
    sink.shutdown()


if __name__ == "__main__":
    main()
