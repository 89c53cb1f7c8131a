"""How the SQLite journal reaches its writer: a child process, or a thread.

:class:`ProcessLink` starts ``_journal_writer`` as a child process and drives
its pipes from the event loop: each frame is written without blocking (the rest
waits for the pipe to drain), and answers are read as they arrive. There is no
thread on this side, so nothing here waits for the GIL. :class:`ThreadLink`
runs the same :class:`~plyr_rooms._journal_writer.Writer` in a thread, for
systems without the loop's pipe readers (Windows). Both hand the journal each
batch's answers in the order of its calls, and say when the writer is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final, Protocol, TypeVarTuple

import anyio

from ._journal_writer import Answer, Call, Stats, Writer, frame, unframe

__all__ = ["Link", "OnAnswers", "OnEnded", "ProcessLink", "ThreadLink"]

logger = logging.getLogger(__name__)

_Ts = TypeVarTuple("_Ts")
_WRITER_FILE: Final = os.path.join(os.path.dirname(__file__), "_journal_writer.py")


class Link(Protocol):
    """How the journal reaches its writer: a child process or a thread."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer in *loop* from now on (before the first :meth:`send`)."""
        ...

    def send(self, calls: list[Call]) -> None:
        """Hand one frame of calls to the writer; it answers them in order."""
        ...

    def stop(self) -> None:
        """Ask the writer to finish what it was sent, then exit."""
        ...

    async def join(self) -> None:
        """Wait until the writer is gone."""
        ...


#: The journal's side: each batch's answers, stats, failure and fallback note.
OnAnswers = Callable[[list[Answer], Stats, str | None, str | None], None]
#: The journal's side: the writer is gone (None: after a stop asked for).
OnEnded = Callable[[str | None], None]


class ProcessLink:
    """The writer as a child process, its pipes driven by the event loop."""

    def __init__(self, args: list[str], answer: OnAnswers, ended: OnEnded) -> None:
        self._answer = answer
        self._ended = ended
        # -I: no environment variables, no user site; -S: no site packages.
        # The writer needs the standard library only, and starts faster. In a
        # process group of its own, so that a Ctrl-C at the terminal reaches
        # this process alone, which may still want to drain its rooms.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _WRITER_FILE, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            process_group=0,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._to = self._proc.stdin.fileno()
        self._from = self._proc.stdout.fileno()
        os.set_blocking(self._to, False)
        os.set_blocking(self._from, False)
        os.set_blocking(self._proc.stderr.fileno(), False)
        self._out = bytearray()
        self._in = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._stopping = False
        self._fatal: str | None = None
        self._gone: asyncio.Future[None] | None = None
        # A journal never closed still lets its writer go (and reaps it).
        weakref.finalize(self, _reap, self._proc)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._gone = loop.create_future()
        loop.add_reader(self._from, self._readable)

    def send(self, calls: list[Call]) -> None:
        self._out += frame(calls)
        self._write()

    def stop(self) -> None:
        self._stopping = True
        if self._loop is None:  # never used: nothing to finish
            self._close_input()
            return

        self._out += frame(None)
        self._write()

    async def join(self) -> None:
        if self._gone is not None:
            await asyncio.shield(self._gone)

        await anyio.to_thread.run_sync(self._proc.wait)
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()

    def _write(self) -> None:
        assert self._loop is not None
        if self._proc.stdin is None or self._proc.stdin.closed:
            self._out.clear()  # the writer is gone; the reader says so
            return

        try:
            del self._out[: os.write(self._to, self._out)]
        except BlockingIOError:
            pass
        except OSError:
            self._out.clear()  # a broken pipe: the reader sees the end

        if self._out and not self._writing:
            self._loop.add_writer(self._to, self._write)
            self._writing = True
        elif not self._out and self._writing:
            self._loop.remove_writer(self._to)
            self._writing = False

        if not self._out and self._stopping:
            self._close_input()

    def _close_input(self) -> None:
        assert self._proc.stdin is not None
        if not self._proc.stdin.closed:
            self._proc.stdin.close()

    def _readable(self) -> None:
        try:
            data = os.read(self._from, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""

        if not data:
            self._end()
            return

        self._in += data
        for message in unframe(self._in):
            if message[0] == "done":
                self._answer(*message[1:])
            else:
                self._fatal = message[1]

    def _end(self) -> None:
        assert self._loop is not None
        assert self._gone is not None
        self._loop.remove_reader(self._from)
        if self._writing:
            self._loop.remove_writer(self._to)
            self._writing = False

        self._close_input()
        why = None
        if self._fatal is not None or not self._stopping:
            why = self._fatal or _stderr_of(self._proc) or _exit_of(self._proc)

        self._ended(why)
        if not self._gone.done():
            self._gone.set_result(None)


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    # What a writer that died without a word wrote on its way out, if anything.
    assert proc.stderr is not None
    try:
        text = proc.stderr.read(4096) or b""
    except OSError:
        text = b""

    return text.decode("utf-8", "replace").strip()[-1000:]


def _exit_of(proc: subprocess.Popen[bytes]) -> str:
    # Its end of the pipe is closed: it has exited, or is about to.
    try:
        code = proc.wait(0.5)
    except subprocess.TimeoutExpired:
        return "it closed its output"

    return f"killed by signal {-code}" if code < 0 else f"it exited with code {code}"


def _reap(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()

    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ThreadLink:
    """The writer as a thread of this process (where no child process can be)."""

    def __init__(
        self, writer: Writer, max_batch: int, answer: OnAnswers, ended: OnEnded
    ) -> None:
        self._answer = answer
        self._ended = ended
        self._writer = writer
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[list[Call] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(
            target=self._run, name="plyr-rooms-journal", daemon=True
        )
        self._thread.start()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def send(self, calls: list[Call]) -> None:
        self._queue.put(calls)

    def stop(self) -> None:
        self._queue.put(None)

    async def join(self) -> None:
        await anyio.to_thread.run_sync(self._thread.join)

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = self._take()
                if batch:
                    answers = self._writer.commit(batch)
                    stats = self._writer.stats(time.thread_time())
                    self._tell(
                        self._answer,
                        answers,
                        stats,
                        self._writer.error,
                        self._writer.fallback,
                    )

        except BaseException as exc:
            logger.exception("journal writer thread failed")
            self._tell(self._ended, repr(exc))
        finally:
            self._writer.conn.close()

    def _take(self) -> tuple[list[Call], bool]:
        # Every whole frame queued, up to max_batch calls.
        first = self._queue.get()
        if first is None:
            return [], True

        batch = list(first)
        while len(batch) < self._max_batch:
            try:
                calls = self._queue.get_nowait()
            except queue.Empty:
                break

            if calls is None:
                return batch, True

            batch.extend(calls)

        return batch, False

    def _tell(self, call: Callable[[*_Ts], None], *args: *_Ts) -> None:
        if self._loop is None:
            return

        try:
            self._loop.call_soon_threadsafe(call, *args)
        except RuntimeError:
            # The loop is closed: nobody is waiting any more.
            logger.debug("journal answers for a closed event loop dropped")
