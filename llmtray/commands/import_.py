"""`llmtray import`: import provider usage/cost exports, report APIs' JSON and llmtray exports.

A thin layer over `llmtray.importers.engine`: it prints, per file, rows read, imported,
duplicates and errors with their lines (the first 20, then a count), and exits 1 when any row
or file failed or an import was refused because it overlaps events llmtray observed itself.
A file with bad rows imports nothing unless `--skip-bad-rows` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from llmtray.commands.report import UsageError
from llmtray.core.wording import display_width, pad
from llmtray.importers import BY_NAME, GENERIC, ColumnMapping, ImportFileError, MappingStore
from llmtray.importers.datasets import HEADERS, cells
from llmtray.importers.mapping import TARGETS, guess
from llmtray.importers.overlap import POLICIES, describe, describe_imports

if TYPE_CHECKING:
    from llmtray.importers.engine import Importer, ImportResult

SHOW_ERRORS = 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="import usage/cost exports (OpenAI, Anthropic, OpenRouter, LiteLLM, llmtray, any CSV)",
        description="Import usage files. The format is recognised from the file's header or first record; "
                    "importing the same rows twice adds nothing. Each file becomes a dataset that "
                    "--list shows and --remove deletes.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="files to import")
    p.add_argument("--format", choices=tuple(BY_NAME), metavar="NAME",
                   help=f"skip detection and read the files as NAME: {', '.join(BY_NAME)}")
    p.add_argument("--dry-run", action="store_true", help="read and check everything, store nothing")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="import a file's good rows even if some rows can't be read (they are still listed, "
                        "and the exit code is still 1); without it, a file with bad rows imports nothing")
    p.add_argument("--overlap", choices=POLICIES[1:], metavar="keep|skip|replace",
                   help="when imported rows fall on days that already have events observed by hooks/proxy "
                        "for the same provider: keep both, skip those rows, or replace the observed events "
                        "(default: refuse and list the days)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help=f"generic CSV: read FIELD from COLUMN (fields: {', '.join(TARGETS)}); saved for files "
                        "with the same columns")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="generic CSV: a constant for every row, e.g. provider=openai")
    p.add_argument("--list", action="store_true", help="list imported datasets")
    p.add_argument("--remove", type=int, metavar="ID", help="remove dataset ID and its events")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    if args.list:
        return _list(ctx)
    if args.remove is not None:
        return _remove(ctx, args.remove)
    if not args.files:
        raise UsageError("import: give one or more FILEs, or --list / --remove ID")
    from llmtray.importers.engine import Importer  # store and pricing load in ~0.5 s: not for --help

    store = ctx.store()
    importer = Importer(store, MappingStore(ctx.paths.config_dir))
    failed = False
    for name in args.files:
        path = Path(name)
        try:
            mapping = _mapping(args, importer, path)
            result = importer.run(path, format_name=args.format, overlap=args.overlap or "refuse",
                                  dry_run=args.dry_run, mapping=mapping, skip_bad_rows=args.skip_bad_rows)
        except ImportFileError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            failed = True
            continue
        _print(name, result, args.dry_run, args.skip_bad_rows)
        failed = failed or not result.ok
    return 1 if failed else 0


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        field, sep, target = value.partition("=")
        if not sep or not field.strip():
            raise UsageError(f"{option} {value!r}: expected FIELD=VALUE")
        out[field.strip()] = target.strip()
    return out


def _mapping(args: argparse.Namespace, importer: Importer, path: Path) -> ColumnMapping | None:
    """The generic CSV mapping from --map/--set; without them, the saved one, else a guess
    from the column names (printed, so the user sees what was assumed)."""
    columns, constants = _pairs(args.map, "--map"), _pairs(args.set, "--set")
    if columns or constants:
        if args.format not in (None, GENERIC.name):
            raise UsageError("--map and --set apply to --format generic-csv only")
        args.format = GENERIC.name
        return ColumnMapping(columns, constants)
    if args.format != GENERIC.name:
        return None
    detection = importer.detect(path, GENERIC.name)
    if detection.mapping is not None:
        return None  # the saved mapping applies
    guessed = guess(detection.head.header or ())
    shown = ", ".join(f"{k}={v}" for k, v in guessed.columns.items()) or "nothing"
    print(f"{path.name}: no saved column mapping; guessed {shown}")
    return guessed


def _print(name: str, r: ImportResult, dry_run: bool, skip_bad_rows: bool) -> None:
    print(f"{name}: {r.label} [{r.format}]" + (f", dataset {r.dataset_id}" if r.dataset_id is not None else ""))
    if r.state == "refused":
        print(f"  refused: rows fall on days that already have observed events: {describe(r.overlap)}", file=sys.stderr)
        print("  nothing was imported; run again with --overlap keep (store both), --overlap skip (drop those rows) "
              "or --overlap replace (the imported rows replace the observed events of those days)", file=sys.stderr)
        return
    verb = "would import" if dry_run else "imported"
    line = f"  rows read {r.rows_read}, {verb} {r.imported}, duplicates {r.duplicates}, errors {r.error_count}"
    if r.skipped:
        line += f", skipped {r.skipped} without usage"
    print(line)
    if r.overlap:
        what = {"skip": f"skipped {r.overlap_skipped} rows", "replace": f"replaced {r.replaced} observed events",
                "keep": "kept alongside observed events"}
        action = what["skip"] if r.overlap_skipped else what["replace"] if r.replaced else what["keep"]
        print(f"  overlap with observed events on {describe(r.overlap)}: {action}")
    if r.other_imports:
        print(f"  note: other imports cover the same days: {describe_imports(r.other_imports)}. A provider's usage "
              "and cost exports describe the same spend: keep one (llmtray import --list, --remove ID)")
    if r.state == "rejected" or (dry_run and r.error_count and not skip_bad_rows):
        print(f"  {'would not be' if dry_run else 'NOT'} imported: {r.error_count} bad "
              f"row{'s' if r.error_count != 1 else ''}; nothing {'would be' if dry_run else 'was'} stored from "
              "this file. Fix them, or run again with --skip-bad-rows to import the good rows", file=sys.stderr)
    elif r.state == "cancelled":
        print("  cancelled: nothing was stored from this file", file=sys.stderr)
    for error in r.errors[:SHOW_ERRORS]:
        print(f"  {error}", file=sys.stderr)
    if r.error_count > SHOW_ERRORS:
        print(f"  … and {r.error_count - SHOW_ERRORS} more errors", file=sys.stderr)


def _list(ctx) -> int:  # noqa: ANN001
    datasets = ctx.store(writes=False).list_datasets()
    if not datasets:
        print("no imported datasets")
        return 0
    headers, rows = HEADERS, [cells(d) for d in datasets]
    widths = [max(display_width(h), *(display_width(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for values in (headers, *rows):
        print("  ".join(pad(v, w) for v, w in zip(values, widths)).rstrip())
    return 0


def _remove(ctx, dataset_id: int) -> int:  # noqa: ANN001
    store = ctx.store()
    known = {d["id"]: d for d in store.list_datasets()}
    if dataset_id not in known:
        print(f"llmtray: error: no dataset {dataset_id} (see llmtray import --list)", file=sys.stderr)
        return 1
    from llmtray.importers.engine import Importer

    removal = Importer(store).remove(dataset_id)
    restored = f"; restored {removal.restored} observed events it had replaced" if removal.restored else ""
    print(f"removed dataset {dataset_id} ({known[dataset_id]['name']}): {removal.removed} events{restored}")
    return 0
