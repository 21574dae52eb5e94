"""Run the README's commands the way a newcomer does, and the requests they print.

A process (``make run`` or ``feedserver demo``) is started with its output read line by line in
a thread; once it has printed its example requests and answers ``/readyz``, each printed shell
command is run with bash and curl, exactly as printed (a streaming request gets a time limit,
as a user would press Ctrl-C).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT = 600.0  # a fresh clone installs its venv first
STREAM_SECONDS = 5
COMMAND_TIMEOUT = 60.0


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _pump(running: Running) -> None:
    assert running.proc.stdout is not None
    for line in running.proc.stdout:
        running.lines.append(line)
    running.done.set()


@contextmanager
def started(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            until: str = "/metrics") -> Iterator[Running]:
    """Start ``argv`` with exactly the environment ``env`` and wait until its output has a
    line containing ``until`` (or it ended); on leaving, Ctrl-C it like a user and wait for
    it to end."""
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    running = Running(proc)
    threading.Thread(target=_pump, args=(running,), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while not any(until in line for line in running.lines) and not running.done.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} printed no {until!r} in {READY_TIMEOUT} s:\n"
                                     f"{running.output[-4000:]}")
            time.sleep(0.1)
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, to the whole process group
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        running.done.wait(timeout=10)


def wait_ready(base: str, running: Running) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise AssertionError(f"the server exited ({running.proc.returncode}):\n"
                                 f"{running.output[-4000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base}/readyz never answered 200:\n{running.output[-4000:]}")


def printed_commands(output: str) -> list[str]:
    """The shell commands after ``try:``: the ``KEY=...`` line and each ``curl``."""
    after = output.split("\ntry:\n", 1)[1]
    return [line.strip() for line in after.splitlines()
            if line.strip().startswith(("KEY=", "curl "))]


def user_env(**settings: str) -> dict[str, str]:
    """The environment of a user's shell: ours without what an enclosing `make test` or venv
    sets (MAKEFLAGS would hand its variables to an inner `make run`), plus ``settings``."""
    dropped = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH"}
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, **settings}


def readme_commands(readme: str, base: str) -> list[str]:
    """Every curl request README.md shows against the demo, pointed at ``base``."""
    found = re.findall(r'(?m)(curl [^`\n]*http://127\.0\.0\.1:8080[^`\n]*)', readme)
    return [c.strip().replace("http://127.0.0.1:8080", base) for c in found]


def printed_urls(output: str) -> list[str]:
    """The pages the ``open`` line names."""
    line = next(x for x in output.splitlines() if x.strip().startswith("open "))
    return [word.rstrip(",") for word in line.split() if word.startswith("http")]


@dataclass(frozen=True)
class Ran:
    command: str
    returncode: int
    stdout: bytes


def run_printed(commands: Sequence[str], cwd: Path, *, fail: bool = False) -> list[Ran]:
    """Each curl command run by bash after the ``KEY=`` line, as a user pastes them; a
    streaming one (``-N``) is stopped after a few seconds. With ``fail``, an HTTP error
    status makes curl fail (exit 22)."""
    setup = [c for c in commands if c.startswith("KEY=")]
    assert len(setup) == 1, commands
    out = []
    for command in commands:
        if not command.startswith("curl "):
            continue
        limited = command.replace("curl -N", f"curl --max-time {STREAM_SECONDS} -N", 1)
        if fail:
            limited = limited.replace("curl ", "curl --fail ", 1)
        proc = subprocess.run(["bash", "-c", f"{setup[0]}\n{limited}"], cwd=cwd,
                              capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        out.append(Ran(command, proc.returncode, proc.stdout))
    return out
