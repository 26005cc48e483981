"""The local ingest API: HTTP transport, the writer thread and the service the GUI and `serve` embed (no Qt)."""
