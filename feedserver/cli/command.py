"""How a parsed command line becomes a typed call.

A command is a plain function ``fn(settings, *, option=default, ...) -> int`` whose keyword
parameters are exactly the destinations of its argparse parser. ``bind(parser, fn)`` attaches
the function to its parser and ``invoke(args, settings)`` calls it with those keywords and
nothing else. So code that runs a command itself (``feedserver demo`` runs ``events consume``
and ``serve``) calls the function with keywords and never builds an ``argparse.Namespace``:
a new option gets a default and cannot break another caller. ``tests/unit/cli`` checks for
every command that its parser's destinations and its function's parameters are the same set.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from feedserver.config import Settings

Command = Callable[..., int]

_COMMAND = "_command"


def bind(parser: argparse.ArgumentParser, fn: Command) -> None:
    """Make ``fn`` the command ``parser`` runs."""
    parser.set_defaults(**{_COMMAND: fn})


def options(fn: Command) -> list[str]:
    """The keyword parameters of a command: what its parser must provide."""
    return [name for name, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def command_of(args: argparse.Namespace) -> Command:
    fn: Command = vars(args)[_COMMAND]
    return fn


def invoke(args: argparse.Namespace, settings: Settings) -> int:
    """Call the bound command with exactly its own options taken from ``args``."""
    fn = command_of(args)
    given: dict[str, Any] = vars(args)
    return fn(settings, **{name: given[name] for name in options(fn)})

