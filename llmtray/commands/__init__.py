"""One module per `llmtray` subcommand: `add_parser(subparsers)` and a `run(args, ctx)` it sets."""
