"""Every command's parser and its typed function agree, so no caller (the demo runs `events
consume` and `serve` itself) ever needs a hand-built ``argparse.Namespace``: the bug that
crashed `make run` when `events consume` gained ``--members``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from feedserver.cli import build_parser
from feedserver.cli.command import Command, options


def _leaves(parser: argparse.ArgumentParser, path: str = "") -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path.strip(), parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaves(child, f"{path} {name}")


def _destinations(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions
            if a.dest not in (argparse.SUPPRESS, "help")
            and not isinstance(a, argparse._SubParsersAction)}


COMMANDS = list(_leaves(build_parser()))


def test_every_command_is_bound() -> None:
    assert len(COMMANDS) >= 30
    for name, parser in COMMANDS:
        assert callable(parser.get_default("_command")), name


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_parser_options_are_the_function_parameters(name: str,
                                                    parser: argparse.ArgumentParser) -> None:
    fn: Command = parser.get_default("_command")
    assert _destinations(parser) == set(options(fn)), name


def test_options_are_keyword_only_with_settings_first() -> None:
    import inspect

    for name, parser in COMMANDS:
        params = list(inspect.signature(parser.get_default("_command")).parameters.values())
        assert params[0].name == "settings", name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), name
