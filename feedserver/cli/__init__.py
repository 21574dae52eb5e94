"""``feedserver`` command line: one sub-module per command group.

Each sub-module exposes ``register(subparsers)`` adding its commands; a command's handler takes
the parsed ``argparse.Namespace`` plus ``Settings`` and returns an exit code. Expected errors
(``FeedError``) print one line to stderr and exit 1; nothing half-written is published.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from feedserver.config import load_settings
from feedserver.errors import FeedError

# Command groups, each a module of this package with ``register(subparsers)``.
GROUPS = ("snapshot", "diff", "events", "batches", "serve", "accounts", "usage", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedserver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"feedserver.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        code: int = args.handler(args, settings)
        return code
    except FeedError as exc:
        print(f"feedserver: error: {exc.detail}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"feedserver: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("feedserver: interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
