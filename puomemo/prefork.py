"""Several daphne processes on one port: the parent binds the listening sockets, each worker adopts one.

`manage.py serve --workers N` binds N sockets to the port with SO_REUSEPORT (the kernel spreads connections over
them by address hash; measured far more even than one shared socket, from which one Twisted worker may accept a
whole burst: docs/performance.md), or one socket with --shared-socket, then starts N `serve` processes that each
run daphne on an inherited socket (a Twisted `fd:` endpoint), forwards SIGTERM and SIGINT to them, restarts
none, and exits once they have all exited. A worker that exits on its own stops the others: the parent exits
with its code, so that whatever supervises `serve` (Docker's restart policy, systemd) sees the failure.
Workers die with the parent (PR_SET_PDEATHSIG), as a single process's connections would.

Once serve has bound the sockets, it replaces itself (exec) with this file run as a script, so that the parent
holds only the standard library and prometheus_client (about 20 MB) rather than Django (about 130 MB). Only
those two may be imported here.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import NoReturn

from prometheus_client import multiprocess

# Connections the kernel queues for the workers before one accepts (Twisted's own default is 50).
BACKLOG = socket.SOMAXCONN

_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port that child processes may inherit."""
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = addresses[0]
    if family != socket.AF_INET:
        raise ValueError(f"{host} is not an IPv4 address: several workers listen on IPv4 only (daphne's fd: endpoint)")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_all(host: str, port: int, count: int, *, reuse_port: bool) -> list[socket.socket]:
    """The listening sockets of `count` workers: one each with SO_REUSEPORT, else one they share."""
    # Bound alone first: a port in use fails here, even by a serve whose sockets would take ours as partners.
    first = bind(host, port)
    if not reuse_port:
        return [first]
    bound = first.getsockname()[1]  # the port --port 0 got
    first.close()
    return [bind(host, bound, reuse_port=True) for _ in range(count)]


def endpoint(sock: socket.socket) -> str:
    """The Twisted endpoint string that adopts this socket in a child (daphne -e; its `fd:` parser takes IPv4 only)."""
    if sock.family != socket.AF_INET:
        raise ValueError("several workers listen on IPv4 addresses only (daphne's fd: endpoint)")
    return f"fd:fileno={sock.fileno()}"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when the parent dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return preexec


def _describe(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def supervise(
    command: Callable[[int, str], list[str]],
    sockets: list[socket.socket],
    count: int,
    write: Callable[[str], None],
) -> int:
    """Start `count` workers (`command(index, endpoint)`), the i-th adopting sockets[i % len(sockets)]; wait.

    Returns the exit code for the parent: 0 when the workers exited after a SIGTERM or SIGINT it forwarded,
    else the code of the first worker that exited on its own (1 for a clean exit nobody asked for).
    """
    # Every worker's metrics in one directory: /metrics of any worker answers for the whole serve.
    metrics_dir = tempfile.mkdtemp(prefix="puomemo-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    workers: dict[int, tuple[int, subprocess.Popen]] = {}
    stopping = False
    result = 0

    def stop_all(signum: int) -> None:
        for _, process in workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        stop_all(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        preexec = _die_with_parent()
        for index in range(count):
            if stopping:
                break
            sock = sockets[index % len(sockets)]
            process = subprocess.Popen(  # noqa: S603  (this interpreter, serve's own arguments)
                command(index, endpoint(sock)),
                pass_fds=[sock.fileno()],
                env=env,
                process_group=0,  # a terminal's Ctrl-C reaches the parent only, which forwards it once
                preexec_fn=preexec,
            )
            workers[process.pid] = (index, process)
            write(f"Worker {index + 1}/{count} started (pid {process.pid}).")
        for sock in sockets:
            sock.close()  # the workers hold it; a dead worker's share must not sit here unaccepted
        while any(process.returncode is None for _, process in workers.values()):
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in workers:
                continue
            index, process = workers[pid]
            process.returncode = os.waitstatus_to_exitcode(status)
            multiprocess.mark_process_dead(pid, metrics_dir)
            if not stopping:
                stopping = True
                result = process.returncode if process.returncode > 0 else 1
                write(f"Worker {index + 1}/{count} (pid {pid}) {_describe(process.returncode)}; stopping the others.")
                stop_all(signal.SIGTERM)
        return result
    finally:
        for _, process in workers.values():  # only after an error here: never leave a worker behind
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                process.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def exec_supervisor(sockets: list[socket.socket], count: int, command: list[str]) -> NoReturn:
    """Replace this process with `prefork.py COUNT FD[,FD...] -- COMMAND...` (see run())."""
    for sock in sockets:
        sock.set_inheritable(True)
    sys.stdout.flush()
    sys.stderr.flush()
    fds = ",".join(str(sock.fileno()) for sock in sockets)
    # -P: not this directory first on sys.path, where puomemo's modules would shadow top-level ones.
    os.execv(sys.executable, [sys.executable, "-P", __file__, str(count), fds, "--", *command])  # noqa: S606


def run(argv: list[str]) -> int:
    """Supervise COUNT workers, each running COMMAND with --worker-endpoint and --worker-index added, on the
    inherited listening sockets FD[,FD...]."""
    count, fds, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: prefork.py COUNT FD[,FD...] -- COMMAND...")
    sockets = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]

    def worker(index: int, endpoint: str) -> list[str]:
        return [*command, "--worker-endpoint", endpoint, "--worker-index", str(index)]

    return supervise(worker, sockets, int(count), lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
