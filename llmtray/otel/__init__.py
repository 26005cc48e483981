"""OpenTelemetry in (DESIGN §12): an OTLP/HTTP receiver for GenAI spans and coding agents' logs.

`decode` turns protobuf or JSON bodies into neutral records, `emitters` decides which records are
calls and maps each emitter's attributes to a usage event, `receiver` answers OTLP and hands the
events to the ingest writer. No Qt, no OpenTelemetry SDK: only `opentelemetry-proto` for protobuf.
"""
