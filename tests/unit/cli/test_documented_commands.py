"""Every ``feedserver ...`` command line shown in README.md and docs/*.md parses with the real
command-line parser: the docs once showed ``plans create --file``, which never existed."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from feedserver.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # NAME, ID, N: any value, "1" parses for all
_FENCE = re.compile(r"```(?:sh|bash|console|shell)?\n(.*?)```", re.S)


def _documented() -> list[tuple[str, str]]:
    """(document, command) for every feedserver command in a fenced block; ``a | b | c``
    alternatives of one group (``feedserver plans list | show NAME``) become one command each."""
    out: list[tuple[str, str]] = []
    for doc in DOCS:
        for block in _FENCE.findall(doc.read_text(encoding="utf-8")):
            for raw in block.splitlines():
                line = raw.split(" #")[0].strip().removeprefix("$ ")
                if not line.startswith("feedserver ") or "$(" in line or "<" in line:
                    continue
                words = line.removeprefix("feedserver ").split(" | ")
                group = words[0].split()[0]
                for i, alt in enumerate(words):
                    alt = alt.replace("[", "").replace("]", "").replace("\\", "").strip()
                    if "|" in alt or "..." in alt or "…" in alt:
                        continue  # a placeholder list, not a command
                    out.append((doc.name, alt if i == 0 else f"{group} {alt}"))
    return out


COMMANDS = _documented()


def test_the_docs_show_commands() -> None:
    assert any(cmd.startswith("plans create") for _, cmd in COMMANDS)


@pytest.mark.parametrize(("doc", "command"), COMMANDS)
def test_documented_command_parses(doc: str, command: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(
                ["1" if _PLACEHOLDER.match(w) else w for w in shlex.split(command)])
        except SystemExit as exc:
            pytest.fail(f"{doc}: `feedserver {command}` does not parse ({exc.code}): "
                        f"{err.getvalue().strip()}")
