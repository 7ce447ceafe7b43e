"""Sandboxed worker processes: where an entry's pseudocode runs, and the only place it runs.

A `Pool` keeps a few long-lived *worker* processes (one per core by default). Each is forked from the build's own
process, which has imported torch already (so a worker is ready in milliseconds, not the second a fresh interpreter
needs to import torch), warms up every ``ops`` function, and then serves requests from the parent: for each request
it forks a *child* that

1. closes every file descriptor but its reply pipe (stdin and stdout become ``/dev/null``);
2. drops root to ``nobody`` where it runs as root, and sets resource limits before any entry code runs: address
   space (`MEMORY`), CPU seconds, file size 0, no new file descriptors, no new processes, no core dumps;
3. parses, checks and runs the snippet on the tensors it was sent (copies: the parent's objects never leave the
   parent), and writes back values only (`adapterspec.catalog.wire`, never pickle).

The worker waits for the child with a wall-clock deadline and kills it when the deadline passes; a crash, a
``MemoryError`` or a CPU-limit kill is reported as such. The parent in turn waits for the worker with a deadline and
replaces a worker that fails to answer. Every request runs in a fresh child, so nothing one request does can be
seen by the next. The parent compares what comes back with its own objects; it never executes entry code.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import resource
import select
import signal
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from adapterspec.catalog import wire
from adapterspec.catalog.sandbox import CallTimeout, SnippetError

CALL_SECONDS = 5.0  # wall-clock deadline for one call of a snippet function (they take milliseconds)
REQUEST_SECONDS = 30.0  # and for all the calls of one request (one entry's)
MEMORY = 1 << 30  # address space a child may add to what the worker already maps
STARTUP_SECONDS = 60.0  # a worker's warm-up on a very busy machine
_FRAME = struct.Struct(">Q")
NOBODY = 65534


# -- framing, used on both sides ------------------------------------------------------------------------------------
def _write(fd: int, payload: bytes) -> None:
    data = _FRAME.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, need = [], n
    while need:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)


def _read(fd: int, deadline: float | None, limit: int = wire.MAX_BYTES) -> bytes | None:
    head = _read_exact(fd, _FRAME.size, deadline)
    if head is None:
        return None
    (n,) = _FRAME.unpack(head)
    if n > limit:
        return None
    return _read_exact(fd, n, deadline)


# -- the worker process ---------------------------------------------------------------------------------------------
def _warm_up() -> None:
    """Run every ``ops`` function once, so that a child never needs to open a file (lazy imports, kernels)."""
    import torch

    from adapterspec import ops
    from adapterspec.catalog import sandbox

    x = torch.randn(6, 4, dtype=torch.float64)
    q = torch.randn(3, dtype=torch.float64)
    S = ops.skew(q, 3)
    for f in (lambda: ops.zeros(2, 2), lambda: ops.ones(2), lambda: ops.eye(3), lambda: ops.diag(q),
              lambda: ops.sqrt(q.abs()), lambda: ops.cos(q), lambda: ops.sin(q), lambda: ops.softmax(q),
              lambda: ops.topk(q, 2), lambda: ops.kron(x, x), lambda: ops.fft(q), lambda: ops.ifft(q),
              lambda: ops.ifft2(x), lambda: ops.circulant(q), lambda: ops.inv(S + ops.eye(3)),
              lambda: ops.row_norm(x), lambda: ops.svd(x), lambda: ops.cayley(S), lambda: ops.block_diag(S[None]),
              lambda: torch.linalg.matrix_rank(x), lambda: x.cumsum(0), lambda: x.tolist()):
        f()
    for name in ops.__all__:  # any vocabulary added later but not listed above still gets imported
        getattr(ops, name)
    sandbox.execute("def f(x):\n    return x @ x.T\n", [("f", {"x": x})], (lambda: None, lambda: None))
    signal.setitimer(signal.ITIMER_REAL, 0)
    wire.decode(wire.encode([x, (1, 2.0), {"a": None}]))


def _limit(seconds: float) -> None:
    """Everything the child may not do, set before it runs a line of entry code."""
    mapped = mapped_bytes()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if os.geteuid() == 0:  # root ignores RLIMIT_NPROC and can read everything: become nobody
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    cpu = int(seconds) + 1
    for limit, value in ((resource.RLIMIT_AS, mapped + MEMORY), (resource.RLIMIT_CPU, cpu),
                         (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CORE, 0)):
        hard = value + 1 if limit == resource.RLIMIT_CPU else value  # SIGXCPU first, then SIGKILL
        resource.setrlimit(limit, (value, hard))


def _child(reply: int, request: dict[str, Any]) -> None:
    try:
        os.closerange(3, reply)
        os.closerange(reply + 1, 1 << 16)
        _limit(request["seconds"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (reply + 1, reply + 1))  # no new file descriptors
        from adapterspec.catalog.sandbox import execute

        # Each call runs under two timers. The real-time one raises CallTimeout at the snippet's current line (a
        # Python loop); the CPU-time one, a little later, ends the process outright (a loop inside one C call, such
        # as sum(range(10**13)), never returns to Python to see the exception).
        seconds = request["call_seconds"]

        def on_alarm(signum, frame):
            raise CallTimeout(seconds)

        signal.signal(signal.SIGALRM, on_alarm)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        alarm = (lambda: (signal.setitimer(signal.ITIMER_REAL, seconds),
                          signal.setitimer(signal.ITIMER_PROF, seconds + 0.5)),
                 lambda: (signal.setitimer(signal.ITIMER_REAL, 0), signal.setitimer(signal.ITIMER_PROF, 0)))
        try:
            out = {"ok": execute(request["source"], request["calls"], alarm)}
        except SnippetError as e:
            out = {"error": e.message, "line": e.line}
        except MemoryError:
            out = {"error": f"ran out of memory (the sandbox allows {MEMORY >> 20} MiB)", "line": None}
        try:
            payload = wire.encode(out)
        except Exception as e:  # noqa: BLE001 — WireError, or a tensor that cannot be read as bytes
            payload = wire.encode({"error": f"returned something that is not a value: {e}", "line": None})
        _write(reply, payload)
    finally:
        os._exit(0)


def _serve_one(request: dict[str, Any]) -> bytes:
    seconds = float(request["seconds"])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover — the child never returns
        os.close(r)
        _child(w, request)
    os.close(w)
    deadline = time.monotonic() + seconds
    try:
        data = _read(r, deadline)
    finally:
        os.close(r)
    late = time.monotonic() >= deadline
    if data is None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if data is not None and os.WIFEXITED(status):
        return data
    signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if signalled == signal.SIGPROF:
        why = (f"a call did not finish within {request['call_seconds']:g} s (an endless loop, or a computation far "
               "too large?)")
    elif late or signalled == signal.SIGXCPU:
        why = f"did not finish within {seconds:g} s (an endless loop, or a computation far too large?)"
    elif signalled is not None and signalled != signal.SIGKILL:
        why = f"crashed the sandboxed process ({signal.Signals(signalled).name})"
    else:
        why = f"ended without a reply, or sent back more than {wire.MAX_BYTES >> 20} MiB"
    return wire.encode({"error": why, "line": None})


def main(fd_in: int, fd_out: int) -> None:
    """The worker's loop: requests on ``fd_in``, replies on ``fd_out``, one framed message each."""
    import torch

    torch.set_num_threads(1)  # no thread pool: fork-safe, and the sandbox forbids new threads anyway
    _warm_up()
    _write(fd_out, b"ready")
    while True:
        data = _read(fd_in, None, limit=1 << 30)
        if data is None:
            return  # the parent went away
        _write(fd_out, _serve_one(wire.decode(data)))


def in_forked_process(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn()`` (trusted code, JSON-serialisable result) in a forked copy of this process; return a function that
    waits for the result and returns it, or raises RuntimeError with the child's traceback."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover — measured through the parent
        try:
            os.close(r)
            # The parent's OpenMP thread pool did not survive the fork; a parallel region would wait for it forever.
            # One thread, as torch's own DataLoader workers do.
            import torch

            torch.set_num_threads(1)
            try:
                payload = json.dumps({"ok": fn()})
            except BaseException as e:  # noqa: BLE001 — reported to the parent
                payload = json.dumps({"error": "".join(traceback.format_exception(e))})
            with os.fdopen(w, "w") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(w)

    def wait() -> Any:
        with os.fdopen(r) as f:
            data = f.read()
        os.waitpid(pid, 0)
        message = json.loads(data) if data else {"error": "the process ended without a result"}
        if "error" in message:
            raise RuntimeError(message["error"])
        return message["ok"]

    return wait


def mapped_bytes() -> int:
    """This process's address space in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmSize"))) * 1024


# -- the parent's side ------------------------------------------------------------------------------------------------
@dataclass
class _Worker:
    pid: int
    requests: int  # the parent writes requests here
    replies: int  # and reads replies here
    ready: bool = False

    @classmethod
    def start(cls) -> "_Worker":
        import torch  # noqa: F401 — imported before the fork, so the worker inherits it instead of importing it

        to_worker, from_worker = os.pipe(), os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover — the worker never returns
            try:
                keep = (to_worker[0], from_worker[1])
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the parent's to handle
                    signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
                os.closerange(3, min(keep))
                os.closerange(min(keep) + 1, max(keep))
                os.closerange(max(keep) + 1, 1 << 16)
                main(*keep)
            finally:
                os._exit(0)
        os.close(to_worker[0])
        os.close(from_worker[1])
        return cls(pid, to_worker[1], from_worker[0])

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass


class Pool:
    """Long-lived sandboxed workers; `run` may be called from several threads at once."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or max(1, min(os.cpu_count() or 1, 8))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        for _ in range(self.size):
            self._add()

    def _add(self) -> None:
        w = _Worker.start()
        with self._lock:
            self._all.append(w)
        self._idle.put(w)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            if w in self._all:
                self._all.remove(w)
        self._add()

    def run(self, source: str, calls: list[tuple[str, dict[str, Any]]], seconds: float = CALL_SECONDS,
            total_seconds: float = REQUEST_SECONDS) -> list[Any]:
        """Run ``calls`` (function name, keyword arguments) of the snippet ``source`` in a sandboxed child.

        Returns one value per call. Raises `SnippetError` for anything the snippet did wrong, including one call
        running past ``seconds`` or all of them past ``total_seconds`` of wall-clock time, or the sandbox's memory.
        """
        seconds, total_seconds = min(seconds, total_seconds), total_seconds
        w = self._idle.get()
        try:
            if not w.ready:
                if _read(w.replies, time.monotonic() + STARTUP_SECONDS) != b"ready":
                    raise RuntimeError("a sandbox worker failed to start")
                w.ready = True
            request = wire.encode({"source": source, "calls": [list(c) for c in calls], "seconds": total_seconds,
                                   "call_seconds": seconds})
            _write(w.requests, request)
            data = _read(w.replies, time.monotonic() + total_seconds + 10)
        except (OSError, RuntimeError):
            self._replace(w)
            raise
        if data is None:  # the worker itself stopped answering: it is replaced, the snippet is blamed
            self._replace(w)
            raise SnippetError(f"did not finish within {total_seconds:g} s")
        self._idle.put(w)
        try:
            reply = wire.decode(data)
        except wire.WireError as e:
            raise SnippetError(f"the sandbox sent back a malformed reply ({e})") from None
        if not isinstance(reply, dict) or ("ok" in reply) == ("error" in reply):
            raise SnippetError("the sandbox sent back a malformed reply")
        if "error" in reply:
            line = reply.get("line")
            raise SnippetError(str(reply["error"]), line if isinstance(line, int) else None)
        values = reply["ok"]
        if not isinstance(values, list) or len(values) != len(calls):
            raise SnippetError("the sandbox sent back a malformed reply")
        return values

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for w in workers:
            w.kill()


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """The process-wide pool, started on first use (its workers import torch in the background meanwhile)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool(int(os.environ.get("ADAPTERSPEC_WORKERS", "0")) or None)
        return _pool


def shutdown() -> None:
    """Stop the pool's workers (at exit, and before `mkdocs serve` re-imports the package)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


atexit.register(shutdown)
