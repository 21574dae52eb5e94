"""``feedserver`` command line: one sub-module per command group, listed in ``GROUPS``.

Each group module exposes ``register(subparsers)``, which adds its commands and binds each to a
typed function ``fn(settings, *, option=...) -> int`` (``feedserver.cli.command``). Expected
errors (``FeedError``, bad values, unreadable files) print one line to stderr and exit 1;
nothing half-written is published.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from feedserver.cli import accounts, batches, demo, diff, events, serve, snapshot, usage
from feedserver.cli.command import invoke
from feedserver.config import load_settings
from feedserver.errors import FeedError
from feedserver.logs import setup_logging

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# The command groups, in the order ``feedserver --help`` lists them.
GROUPS: tuple[Register, ...] = (
    snapshot.register, diff.register, events.register, batches.register, serve.register,
    accounts.register, usage.register, demo.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedserver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings)
        return invoke(args, settings)
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
