"""JSON lines between the benchmark's processes.

The driver talks to each child (the simulator, the measured client) through the
child's stdin and stdout, one JSON object per line. Children write with
:func:`emit` and read with :class:`StdinLines`; the driver holds a
:class:`ChildProcess`. Session JWTs travel on these pipes only, never in argv.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

if TYPE_CHECKING:
    from anyio.abc import Process

__all__ = ["ChildProcess", "StdinLines", "configure_child_logging", "emit"]

# A stats answer of a 10,000-room run carries ~60,000 task records (~8 MB).
_MAX_LINE = 1 << 28
# Seconds a child may take to exit once told to quit.
_QUIT_TIMEOUT = 10.0


def emit(message: dict[str, Any]) -> None:
    """Write *message* as one JSON line to stdout and flush it."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class StdinLines:
    """Read JSON lines from this process's stdin without blocking the loop."""

    def __init__(self) -> None:
        self._file = anyio.wrap_file(sys.stdin)

    async def receive(self) -> dict[str, Any] | None:
        """Return the next message, or None at end of input."""
        line = await self._file.readline()
        if not line:
            return None

        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError(f"expected a JSON object, got {line[:80]!r}")

        return message


class ChildProcess:
    """A child process of the benchmark speaking JSON lines on stdin/stdout."""

    def __init__(self, process: Process) -> None:
        self._process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(cls, module: str, *, log_level: str = "ERROR") -> ChildProcess:
        """Run ``python -m <module>`` with pipes on stdin and stdout.

        The child's stderr is the driver's, so its errors stay visible.
        """
        env = dict(os.environ, PLYR_BENCH_LOG=log_level)
        process = await anyio.open_process(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    async def send(self, message: dict[str, Any]) -> None:
        """Write *message* as one line to the child's stdin."""
        assert self._process.stdin is not None
        data = json.dumps(message, separators=(",", ":")) + "\n"
        await self._process.stdin.send(data.encode())

    async def receive(self) -> dict[str, Any]:
        """Return the child's next line as an object.

        Raises:
            RuntimeError: if the child closed its stdout (it exited).
        """
        try:
            line = await self._stdout.receive_until(b"\n", _MAX_LINE)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            code = await self._process.wait()
            raise RuntimeError(f"benchmark child exited with code {code}") from None

        message = json.loads(line)
        if not isinstance(message, dict):
            raise RuntimeError(f"benchmark child sent {line[:80]!r}")

        return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send *message* and return the answer."""
        await self.send(message)
        return await self.receive()

    async def close(self) -> int:
        """Ask the child to quit and wait for it, killing it after 10 seconds."""
        with contextlib.suppress(
            anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            await self.send({"cmd": "quit"})

        with anyio.move_on_after(_QUIT_TIMEOUT, shield=True):
            return await self._process.wait()

        self._process.kill()
        with anyio.CancelScope(shield=True):
            code: int = await self._process.wait()

        return code


def configure_child_logging() -> None:
    """Log to stderr at the level the driver asked for (ERROR by default)."""
    level = os.environ.get("PLYR_BENCH_LOG", "ERROR").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.ERROR),
        format="%(asctime)s %(levelname)s [bench child] %(name)s: %(message)s",
    )
