"""`llmtray otel-env [TOOL]`: print the settings that send a tool's OpenTelemetry to llmtray."""

from __future__ import annotations

import argparse
import sys

from llmtray.otel.setup import TOOLS, settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("otel-env", help="print the settings that point an OpenTelemetry exporter at llmtray",
                       description="Print the exact lines (environment variables, or Codex's config.toml block) "
                                   "that send a tool's OpenTelemetry (OTLP/HTTP) to this llmtray, token included.")
    p.add_argument("tool", nargs="?", choices=TOOLS, default="generic", help="which tool (default: generic)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    from llmtray.ingest import credentials, discovery

    running = discovery.live_owner(ctx.paths.ingest_file)
    if running is not None:
        url, token = running.url, running.token
    else:
        url = f"http://127.0.0.1:{ctx.config.port}"
        token = credentials.load_or_create(ctx.paths.token_file).value
        print(f"# llmtray is not running on {ctx.paths.data}; start it (or `llmtray serve`) to receive these.",
              file=sys.stderr)
    print(settings(args.tool, url, token))
    return 0
