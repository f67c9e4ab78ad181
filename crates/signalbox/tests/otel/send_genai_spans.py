"""Emits OpenTelemetry GenAI spans to signalbox with the official Python SDK.

Environment:
  SIGNALBOX_URL      base URL of a running signalbox (http://127.0.0.1:PORT)
  SIGNALBOX_API_KEY  an API key with the write scope
  OTLP_ENCODING      "protobuf" (the SDK's OTLPSpanExporter) or "json"
  RUN_ID             a prefix for conversation ids, so runs do not mix

The SDK's TracerProvider and BatchSpanProcessor deliver the spans. For protobuf the exporter
is the official `OTLPSpanExporter` from opentelemetry-exporter-otlp-proto-http, configured the
way an application would (endpoint and an `Authorization` header). The Python SDK has no
OTLP/HTTP JSON exporter, so for JSON the official encoder of
opentelemetry-exporter-otlp-json-common turns the batch into an OTLP/JSON
ExportTraceServiceRequest and `JsonSpanExporter` below POSTs it with
`Content-Type: application/json`.

Prints one JSON line: every model call sent (conversation, provider, model, tokens, status),
so the caller can check that the usage API reports exactly that.
"""

import json
import os
import sys
import urllib.request

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode


class JsonSpanExporter(SpanExporter):
    """OTLP/HTTP with the JSON encoding, using the official OTLP/JSON encoder."""

    def __init__(self, endpoint, headers):
        self._endpoint = endpoint
        self._headers = dict(headers)
        self.failures = []

    def export(self, spans):
        body = encode_spans(spans).to_json().encode("utf-8")
        request = urllib.request.Request(
            self._endpoint,
            data=body,
            method="POST",
            headers={**self._headers, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read() or b"{}")
        except Exception as error:  # noqa: BLE001 - reported to the caller
            self.failures.append(repr(error))
            return SpanExportResult.FAILURE
        if answer.get("partialSuccess", {}).get("rejectedSpans"):
            self.failures.append(json.dumps(answer))
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


# Two models across three conversations:
# (conversation, provider, model, input (including cache reads), cache reads, output, error)
CALLS = [
    (1, "openai", "gpt-4o-mini", 1200, 0, 300, None),
    (1, "openai", "gpt-4o-mini", 1500, 1024, 420, None),
    (1, "anthropic", "claude-sonnet-4", 900, 0, 250, None),
    (2, "anthropic", "claude-sonnet-4", 2000, 0, 800, None),
    (2, "openai", "gpt-4o-mini", 640, 0, 0, "timeout"),
    (3, "openai", "gpt-4o-mini", 333, 0, 77, None),
    (3, "anthropic", "claude-sonnet-4", 4096, 2048, 1024, None),
    (3, "anthropic", "claude-sonnet-4", 17, 0, 5, None),
]


def main():
    url = os.environ["SIGNALBOX_URL"].rstrip("/")
    key = os.environ["SIGNALBOX_API_KEY"]
    encoding = os.environ.get("OTLP_ENCODING", "protobuf")
    run = os.environ.get("RUN_ID", encoding)
    endpoint = f"{url}/v1/traces"
    headers = {"Authorization": f"Bearer {key}"}
    if encoding == "protobuf":
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=10)
    elif encoding == "json":
        exporter = JsonSpanExporter(endpoint, headers)
    else:
        sys.exit(f"unknown OTLP_ENCODING {encoding!r}")

    provider = TracerProvider(resource=Resource.create({"service.name": "chatbot-" + run}))
    processor = BatchSpanProcessor(exporter, max_export_batch_size=3, schedule_delay_millis=50)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("signalbox-acceptance")

    sent = []
    for conversation, system, model, input_tokens, cache_read, output_tokens, error in CALLS:
        conversation_id = f"{run}-conversation-{conversation}"
        # A parent span that is not a GenAI span: counted and dropped by signalbox.
        with tracer.start_as_current_span("handle message", kind=SpanKind.SERVER):
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.provider.name", system)
                span.set_attribute("gen_ai.request.model", model)
                span.set_attribute("gen_ai.response.model", model)
                span.set_attribute("gen_ai.conversation.id", conversation_id)
                span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
                if cache_read:
                    span.set_attribute("gen_ai.usage.cache_read.input_tokens", cache_read)
                if error:
                    span.set_attribute("error.type", error)
                    span.set_status(Status(StatusCode.ERROR, error))
        sent.append(
            {
                "conversation_id": conversation_id,
                "provider": system,
                "model": model,
                "input_tokens": input_tokens,
                "cache_read_tokens": cache_read,
                "output_tokens": output_tokens,
                "error": error is not None,
            }
        )

    flushed = provider.force_flush(timeout_millis=30000)
    provider.shutdown()
    failures = getattr(exporter, "failures", [])
    if not flushed or failures:
        sys.exit(f"export failed: flushed={flushed} failures={failures}")
    print(json.dumps({"encoding": encoding, "calls": sent}))


if __name__ == "__main__":
    main()
