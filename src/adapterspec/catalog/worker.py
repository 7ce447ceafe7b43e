"""Processes: where an entry's pseudocode runs (and the only place it runs), and where each entry is verified.

Both kinds are forked from the build's own process, which has imported torch already (a fork is ready in
milliseconds, where a fresh interpreter needs a second to import torch):

* a **verifier** per entry (`map_forked`, at most one per core at a time): trusted code, which builds the reference
  module, compares, and reports back as JSON. It runs under a wall-clock deadline and an address-space limit, so that
  no entry, whatever hyperparameters it names, can stall the build or exhaust its memory; a verifier that passes its
  deadline is killed and the entry fails, saying so.
* a **sandboxed child** per pseudocode request (`run`), forked by the verifier, which

  1. keeps only its reply pipe (as descriptor 3; stdin, stdout and stderr become ``/dev/null``);
  2. drops root to ``nobody`` where it runs as root, and sets resource limits before any entry code runs: address
     space (`MEMORY`), CPU seconds, file size 0, no free file descriptor (so no file or socket can be opened), no new
     processes (a build that does not run as root keeps its user in the child, which could then signal the build if
     it ever got past the static check), no core dumps;
  3. parses, checks and runs the snippet on the tensors it was given (its own copy-on-write copies: nothing it does
     reaches the verifier's objects), each call under a deadline, and writes back values only
     (`adapterspec.catalog.wire`, never pickle).

The verifier waits for the child with a wall-clock deadline and kills it when the deadline passes; a crash, a
``MemoryError`` or a CPU-limit kill is reported as such. Every request runs in a fresh child, so nothing one request
does can be seen by the next. The verifier compares what comes back with its own objects; it never executes entry
code.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import time
import traceback
from typing import Any, Callable

from adapterspec.catalog import wire
from adapterspec.catalog.sandbox import CallTimeout, SnippetError

CALL_SECONDS = 5.0  # wall-clock deadline for one call of a snippet function (they take milliseconds)
REQUEST_SECONDS = 30.0  # and for all the calls of one request (one entry's)
MEMORY = 1 << 30  # address space a sandboxed child may add to what it inherits
_FRAME = struct.Struct(">Q")
NOBODY = 65534
_warm = False


# -- framing of the reply from a sandboxed child -------------------------------------------------------------------
def _write(fd: int, payload: bytes) -> None:
    data = _FRAME.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float) -> bytes | None:
    chunks, need = [], n
    while need:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)


def _read(fd: int, deadline: float, limit: int = wire.MAX_BYTES) -> bytes | None:
    head = _read_exact(fd, _FRAME.size, deadline)
    if head is None:
        return None
    (n,) = _FRAME.unpack(head)
    if n > limit:
        return None
    return _read_exact(fd, n, deadline)


# -- the sandboxed child, forked for each request ---------------------------------------------------------------------
def warm_up() -> None:
    """Run every ``ops`` function once, so that a sandboxed child never needs to open a file (lazy imports, kernels).
    Once per process; call it before forking verifiers, so that they inherit it."""
    global _warm
    if _warm:
        return
    _warm = True
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
        import torch

        torch.set_num_threads(1)  # the parent's OpenMP threads did not survive the fork (see _fork_json)
        # The reply pipe becomes descriptor 3 and nothing else stays open above it: with RLIMIT_NOFILE at 4 there is
        # no free descriptor left, so the child can open no file and no socket.
        if reply != 3:
            os.dup2(reply, 3)
            os.close(reply)
        reply = 3
        os.closerange(4, 1 << 16)
        _limit(request["seconds"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (4, 4))
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


def mapped_bytes() -> int:
    """This process's address space in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmSize"))) * 1024


def run(source: str, calls: list[tuple[str, dict[str, Any]]], seconds: float = CALL_SECONDS,
        total_seconds: float = REQUEST_SECONDS) -> list[Any]:
    """Run ``calls`` (function name, keyword arguments) of the snippet ``source`` in a sandboxed child.

    Returns one value per call. Raises `SnippetError` for anything the snippet did wrong, including one call running
    past ``seconds`` or all of them past ``total_seconds`` of wall-clock time, or the sandbox's memory.
    """
    warm_up()
    request = {"source": source, "calls": [list(c) for c in calls], "seconds": total_seconds,
               "call_seconds": min(seconds, total_seconds)}
    try:
        reply = wire.decode(_serve_one(request))
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


def _fork_json(fn: Callable[[], Any], memory: int | None = None) -> tuple[int, int]:
    """Fork a child that runs ``fn()`` (trusted code) and writes ``{"ok": result}`` or ``{"error": traceback}`` as
    JSON to a pipe; return (pid, read end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover — measured through the parent
        try:
            os.close(r)
            # The parent's OpenMP thread pool did not survive the fork; a parallel region would wait for it forever.
            # One thread, as torch's own DataLoader workers do.
            import torch

            torch.set_num_threads(1)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us if it must
            if memory is not None:
                limit = mapped_bytes() + memory
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                payload = json.dumps({"ok": fn()})
            except BaseException as e:  # noqa: BLE001 — reported to the parent
                payload = json.dumps({"error": "".join(traceback.format_exception(e))})
            with os.fdopen(w, "w") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _collect(pid: int, chunks: list[bytes]) -> tuple[bool, Any]:
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    try:
        message = json.loads(data) if data else {"error": "the process ended without a result (it crashed)"}
    except ValueError:
        message = {"error": "the process sent back an unreadable result"}
    return ("ok" in message), message.get("ok", message.get("error"))


def in_forked_process(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn()`` (trusted code, JSON-serialisable result) in a forked copy of this process; return a function that
    waits for the result and returns it, or raises RuntimeError with the child's traceback."""
    pid, r = _fork_json(fn)

    def wait() -> Any:
        with os.fdopen(r, "rb") as f:
            ok, value = _collect(pid, [f.read()])
        if not ok:
            raise RuntimeError(value)
        return value

    return wait


def map_forked(fn: Callable[[Any], Any], items: list[Any], seconds: float, memory: int | None = None,
               jobs: int | None = None, on_result: Callable[[int, bool, Any], None] | None = None
               ) -> list[tuple[bool, Any]]:
    """``fn(item)`` for each item, each in a forked process (at most ``jobs`` at a time, one per core by default),
    under a wall-clock deadline of ``seconds`` and an address space of ``memory`` bytes beyond what it inherits.

    Returns ``(True, result)`` or ``(False, why)`` per item, in order; ``on_result(index, ok, value)`` is called as
    each finishes. Replies are read as they arrive, so no child ever waits on a full pipe.
    """
    jobs = jobs or max(1, min(os.cpu_count() or 1, 8))
    results: list[tuple[bool, Any] | None] = [None] * len(items)
    pending = list(range(len(items)))
    running: dict[int, tuple[int, int, float, list[bytes]]] = {}  # fd -> (index, pid, deadline, chunks)

    def finish(i: int, outcome: tuple[bool, Any]) -> None:
        results[i] = outcome
        if on_result:
            on_result(i, *outcome)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop(0)
                pid, fd = _fork_json(lambda item=items[i]: fn(item), memory)
                running[fd] = (i, pid, time.monotonic() + seconds, [])
            wait = max(0.0, min(d for _, _, d, _ in running.values()) - time.monotonic())
            ready, _, _ = select.select(list(running), [], [], wait)
            for fd in ready:
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    running[fd][3].append(chunk)
                    continue
                i, pid, _, chunks = running.pop(fd)
                os.close(fd)
                finish(i, _collect(pid, chunks))
            now = time.monotonic()
            for fd in [fd for fd, (_, _, d, _) in running.items() if d <= now]:
                i, pid, _, _ = running.pop(fd)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(fd)
                finish(i, (False, f"did not finish within {seconds:g} s"))
    finally:  # interrupted (Ctrl-C): leave no process behind
        for fd, (_, pid, _, _) in running.items():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
    return results  # type: ignore[return-value]
