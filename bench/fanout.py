"""Benchmark: real-time fan-out three ways in one run, the same client harness for each.

Run: make bench-fanout   (or .venv/bin/python bench/fanout.py [--subscribers 100] [--burst 200] [--rate 50]
[--seconds 10])
Needs PostgreSQL and Redis: DATABASE_URL and REDIS_URL, by default the local ones `.ci/run` starts.

(a) PUO Memo on daphne with the Redis layer: M memories written in one transaction through the
    real write path, then REST writes at a steady rate; (b) the naive Channels pattern
    (bench/naive_channels.py); (c) the ceiling, websockets.broadcast() fed by Redis pub/sub
    (bench/ceiling.py). Also: (a) again with permessage-deflate and with MessagePack (server CPU
    and bytes on the wire too, for a small and a 50 KB memory), sync-publish events/s, idle memory
    per connection at 2,000 connections against a bare Channels consumer, and what a server process weighs.
"""

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TIMEOUT = 60  # seconds any one phase may take before it is reported as incomplete
PAD = "x" * 300  # the baselines' frames weigh what PUO Memo's do (~560 bytes)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(samples: list[float], q: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100)[q - 1]


# --- The client harness: raw WebSocket clients, cheap enough not to be the bottleneck ---


def masked_text_frame(text: str) -> bytes:
    return masked_frame(text.encode(), 0x1)


def masked_frame(payload: bytes, opcode: int) -> bytes:
    mask, first = os.urandom(4), 0x80 | opcode
    header = (
        bytes([first, 0x80 | len(payload)]) if len(payload) < 126 else bytes([first, 0xFE]) + len(payload).to_bytes(2)
    )
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Client(asyncio.Protocol):
    """One WebSocket client: counts text and binary frames (and keeps them while `keep` is set), answers pings.

    With `deflate` it offers permessage-deflate and inflates compressed frames; with `msgpack` it asks for MessagePack.
    """

    def __init__(self, harness: "Harness", path: str, deflate: bool = False, msgpack: bool = False) -> None:
        self.harness, self.path, self.msgpack = harness, path, msgpack
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.get_running_loop().create_future()  # True: the reply came; False: closed first
        self.transport = None
        self.inflate = zlib.decompressobj(-15) if deflate else None
        self.wire = 0  # bytes read off the socket

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.inflate else ""
        extra += "Sec-WebSocket-Protocol: puomemo.msgpack\r\n" if self.msgpack else ""
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.wire += len(data)
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if b" 101 " not in head.split(b"\r\n")[0]:
                self.upgraded.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded.set_result(None)
        buffer, offset, size = self.buffer, 0, len(self.buffer)
        while size - offset >= 2:
            length, header = buffer[offset + 1] & 0x7F, 2
            if length == 126:
                if size - offset < 4:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 4]), 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 10]), 10
            if size - offset < header + length:
                break
            opcode = buffer[offset] & 0x0F
            start = offset + header
            if opcode in (1, 2) and buffer[offset] & 0x40:  # RSV1: compressed (RFC 7692)
                data = self.inflate.decompress(bytes(buffer[start : start + length]) + b"\x00\x00\xff\xff")
                self.received(data, 0, len(data), now)
            elif opcode in (1, 2):
                self.received(buffer, start, start + length, now)
            elif opcode == 9:  # ping: pong with the same payload
                payload = bytes(buffer[start : start + length])
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            offset = start + length
        del buffer[:offset]

    def received(self, buffer: bytearray | bytes, start: int, end: int, now: float) -> None:
        if not self.subscribed.done() and buffer.find(b"subscribed", start, end) >= 0:  # JSON or MessagePack
            self.subscribed.set_result(True)
        self.harness.frame(buffer, start, end, now)

    def send_frame(self, frame: dict) -> None:
        payload, opcode = (msgpack_module().packb(frame), 0x2) if self.msgpack else (json.dumps(frame).encode(), 0x1)
        if self.inflate is not None:  # as browsers do: compressed, each message with a fresh context
            deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload, opcode = (deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4], opcode | 0x40
        self.transport.write(masked_frame(payload, opcode))

    def connection_lost(self, exc) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        if not self.subscribed.done():
            self.subscribed.set_result(False)


class Harness:
    """N clients of one server, and what they received."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.count = 0  # event frames received
        self.receipts: list[tuple[float, bytes]] | None = None  # (time, frame) while kept

    @property
    def wire(self) -> int:
        return sum(client.wire for client in self.clients)

    def frame(self, buffer: bytearray | bytes, start: int, end: int, now: float) -> None:
        # Replies (subscribed, pong) are small; events carry the bench's marker in their title.
        if buffer.find(b"bench ", start, end) < 0:
            return
        self.count += 1
        if self.receipts is not None:
            self.receipts.append((now, bytes(buffer[start:end])))

    async def open(self, port: int, path: str, n: int, subscribe: bool = False, **options: bool) -> None:
        loop = asyncio.get_running_loop()
        for first in range(0, n, 100):  # a hundred at a time: no SYN flood on the listen backlog
            batch = []
            for _ in range(first, min(n, first + 100)):
                _, client = await loop.create_connection(lambda: Client(self, path, **options), "127.0.0.1", port)
                batch.append(client)
            await asyncio.wait_for(asyncio.gather(*(c.upgraded for c in batch)), TIMEOUT)
            if subscribe:
                for client in batch:
                    client.send_frame({"type": "subscribe", "data": {"channels": ["memories"]}})
                # The batch's subscriptions in place (each reply came, or its connection closed) before the next
                # batch: the server sets a connection up after its upgrade, and a burst of thousands would meet
                # its admission bound (1013 past PUOMEMO_WS_ADMISSION_QUEUE waiting) instead of subscribing.
                await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in batch)), TIMEOUT)
            self.clients += batch
        await asyncio.sleep(0.2)

    def close(self) -> None:
        for client in self.clients:
            client.transport.close()
        self.clients = []

    async def wait_for(self, total: int) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while self.count < total and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.count >= total


def written_at(frame: bytes) -> float:
    """The write time a frame's title carries ("bench <unix time>")."""
    decoded = json.loads(frame) if frame[:1] == b"{" else msgpack_module().unpackb(frame)
    return float(decoded["data"]["memory"]["title"].split()[1])


def msgpack_module():
    import msgpack  # only the MessagePack rows need it

    return msgpack


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prose(size: int) -> str:
    """Text that compresses about as well as writing does: random words from a small vocabulary."""
    import random

    rng = random.Random(12)  # noqa: S311  (a fixed text, not a secret)
    words = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    text = ""
    while len(text) < size:
        text += " ".join(rng.choice(words) for _ in range(200)) + ". "
    return text[:size]


# --- Writers: a separate process per server kind, driven over stdin/stdout ---


def baseline_frame(title: str) -> dict:
    return {
        "id": "00000000-0000-0000-0000-000000000000",
        "type": "memory.created",
        "timestamp": "2026-01-01T00:00:00Z",
        "seq": 1,
        "data": {"memory": {"id": "0", "title": title, "content": PAD, "tags": [], "visibility": "team"}},
    }


def drive(kind: str) -> None:
    """A writer process: reads commands as JSON lines, answers each with a JSON line."""
    if kind == "puomemo":
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
        import django

        django.setup()
        import http.client

        from django.db import transaction

        from accounts.models import Role
        from accounts.principal import principal_from_token
        from accounts.services import api_key_create, tenant_create, user_create
        from memories.services import memory_create
        from realtime.node import node
        from realtime.protocol import TENANT_UPDATES
        from realtime.publish import publish, publish_on_commit

        tenant = tenant_create(slug=f"bench-{int(time.time() * 1000)}")
        key = api_key_create(user=user_create(username=f"{tenant.slug}-writer", tenant=tenant, role=Role.MEMBER))[1]
        author = principal_from_token(key)
        local = threading.local()  # one keep-alive connection per writing thread

        def burst(m: int) -> float:
            with transaction.atomic():
                for i in range(m):
                    memory_create(author=author, title=f"bench 0 {i}", content=PAD[:200], visibility="team")
                t0 = time.time()  # the commit, then the publish of all m
            return t0

        def write(port: int) -> None:
            if not hasattr(local, "http"):
                local.http = http.client.HTTPConnection("127.0.0.1", port)
            http_connection = local.http
            body = json.dumps({"title": f"bench {time.time():.6f}", "content": PAD[:200]})
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            http_connection.request("POST", "/api/v4/memories/", body, headers)
            response = http_connection.getresponse()
            response.read()
            assert response.status == 201, response.status

        def sized(chars: int) -> float:
            with transaction.atomic():
                memory_create(author=author, title="bench 0 sized", content=prose(chars), visibility="team")
            return time.time()

        def publish_speed() -> dict:
            event = {
                "tenant_id": tenant.pk + 10**9,  # a tenant nobody listens to: the publisher alone
                "event_type": "tenant.user_joined",
                "channel": TENANT_UPDATES,
                "data": {"user_id": "1", "user_name": "bench", "connection_id": "bench"},
                "audience": None,
            }
            publisher = node().publisher
            publish(**event)
            publisher.wait()
            # Publishing returns at once; the rates count until Redis has taken every event.
            start = time.perf_counter()
            for _ in range(1000):
                publish(**event)
            publisher.wait()
            one_by_one = 1000 / (time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(10):
                with transaction.atomic():
                    for _ in range(200):
                        publish_on_commit(**event)
            publisher.wait()
            in_transactions = 2000 / (time.perf_counter() - start)
            return {"one_call_each": one_by_one, "200_per_transaction": in_transactions}

        def tenant_key() -> dict:
            """A key of a member of another new tenant: writes spread over tenants."""
            other = tenant_create(slug=f"bench-{int(time.time() * 1000)}")
            user = user_create(username=f"{other.slug}-writer", tenant=other, role=Role.MEMBER)
            return {"key": api_key_create(user=user)[1]}

        answer = {"key": key}
    else:
        tenant_key = dict
        import redis

        redis_url = os.environ["REDIS_URL"]
        if kind == "channels":
            sys.path.insert(0, str(ROOT))
            from asgiref.sync import async_to_sync
            from channels.layers import get_channel_layer

            import bench.naive_channels  # noqa: F401  (configures the layer)

            layer = get_channel_layer()

            async def send_all(frames: list[dict]) -> None:
                for frame in frames:  # the naive pattern: one awaited group_send an event
                    await layer.group_send("bench", {"type": "bench.event", "frame": frame})

            send = async_to_sync(send_all)

            def burst(m: int) -> float:
                frames = [baseline_frame(f"bench 0 {i}") for i in range(m)]
                t0 = time.time()
                send(frames)
                return t0

            def write(port: int) -> None:
                send([baseline_frame(f"bench {time.time():.6f}")])

        else:
            from bench.ceiling import CHANNEL

            client = redis.Redis.from_url(redis_url)

            def burst(m: int) -> float:
                texts = [json.dumps(baseline_frame(f"bench 0 {i}")) for i in range(m)]
                t0 = time.time()
                pipe = client.pipeline(transaction=False)
                for text in texts:
                    pipe.publish(CHANNEL, text)
                pipe.execute()
                return t0

            def write(port: int) -> None:
                client.publish(CHANNEL, json.dumps(baseline_frame(f"bench {time.time():.6f}")))

        def publish_speed() -> dict:
            return {}

        answer = {}
    print(json.dumps(answer), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "burst":
            result = {"t0": burst(command["m"])}
        elif command["do"] == "steady":
            result = steady(write, command["rate"], command["seconds"], command["port"], command.get("threads", 4))
        elif command["do"] == "sized":
            result = {"t0": sized(command["chars"])}
        elif command["do"] == "tenant_key":
            result = tenant_key()
        elif command["do"] == "publish_speed":
            result = publish_speed()
        else:
            result = {}
        print(json.dumps(result), flush=True)


def steady(write, rate: float, seconds: float, port: int, threads: int = 4) -> dict:
    """Writes at a fixed rate from a few threads, so that one slow write does not hold back the next."""
    total, start = int(rate * seconds), time.time()

    def writer(first: int) -> None:
        for n in range(first, total, threads):
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            write(port)

    pool = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"writes": total, "seconds": time.time() - start}


class Writer:
    def __init__(self, kind: str, env: dict) -> None:
        self.process = subprocess.Popen(  # noqa: S603  (this interpreter, this file)
            [PY, __file__, "--drive", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        self.hello = json.loads(self.process.stdout.readline())

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


# --- Servers ---


def start(command: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command} did not listen on {port}; see {log}")


def stop(process: subprocess.Popen, how: int = signal.SIGTERM) -> None:
    process.send_signal(how)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def measure_burst(name: str, harness: "Harness", writer: Writer, events: int, pids: list[int]) -> dict:
    """A burst of `events` written at once to the harness's subscribers: deliveries/s, latency, the servers' CPU."""
    loop = asyncio.get_running_loop()
    subscribers = len(harness.clients)
    # Warm up (first-use costs: imports, connections), then the burst.
    await loop.run_in_executor(None, lambda: writer.ask(do="burst", m=10))
    await harness.wait_for(10 * subscribers)
    harness.count, harness.receipts = 0, []
    expected = events * subscribers
    say(f"{name}: burst of {events} events to {subscribers} subscribers")
    cpu, wire = sum(map(cpu_seconds, pids)), harness.wire
    t0 = (await loop.run_in_executor(None, lambda: writer.ask(do="burst", m=events)))["t0"]
    complete = await harness.wait_for(expected)
    cpu, wire = (sum(map(cpu_seconds, pids)) - cpu if pids else float("nan")), harness.wire - wire
    times = [at for at, _ in harness.receipts]
    elapsed = max(times) - t0 if times else float("nan")
    burst = {
        "deliveries": harness.count,
        "expected": expected,
        "complete": complete,
        "seconds": elapsed,
        "deliveries_per_s": harness.count / elapsed if times else 0,
        "latency_p50_ms": percentile([at - t0 for at in times], 50) * 1000,
        "latency_p99_ms": percentile([at - t0 for at in times], 99) * 1000,
        # The servers' CPU time from the write to the last receipt (their writes included), and the wire bytes.
        "server_cpu_us_per_delivery": cpu * 1e6 / max(harness.count, 1),
        "wire_bytes_per_delivery": wire / max(harness.count, 1),
    }
    say(
        f"{name}: {burst['deliveries_per_s']:,.0f} deliveries/s ({harness.count}/{expected} in {elapsed * 1000:.0f} ms)"
    )
    return burst


async def measure_steady(
    name: str, harness: "Harness", writer: Writer, rate: float, seconds: float, port: int, threads: int = 4
) -> dict:
    """REST writes at `rate` for `seconds` through `port`: write-to-receipt latency at the harness's subscribers."""
    loop = asyncio.get_running_loop()
    subscribers = len(harness.clients)
    harness.count, harness.receipts = 0, []
    say(f"{name}: {rate:g} writes/s for {seconds:g} s to {subscribers} subscribers")
    steady = await loop.run_in_executor(
        None, lambda: writer.ask(do="steady", rate=rate, seconds=seconds, port=port, threads=threads)
    )
    complete = await harness.wait_for(steady["writes"] * subscribers)
    latencies = [(at - written_at(frame)) * 1000 for at, frame in harness.receipts]
    steady.update(
        deliveries=harness.count,
        expected=steady["writes"] * subscribers,
        complete=complete,
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        latency_max_ms=max(latencies, default=float("nan")),
    )
    steady["writes_per_s"] = steady["writes"] / steady["seconds"]
    say(
        f"{name}: write-to-receipt p50 {steady['latency_p50_ms']:.1f} ms, p99 {steady['latency_p99_ms']:.1f} ms"
        f" ({steady['writes_per_s']:.0f} writes/s achieved)"
    )
    return steady


async def measure(
    name: str, port: int, path: str, writer: Writer, args, subscribe: bool, pid: int | None = None, **options: bool
) -> dict:
    harness = Harness()
    say(f"{name}: opening {args.subscribers} connections")
    await harness.open(port, path, args.subscribers, subscribe=subscribe, **options)
    burst = await measure_burst(name, harness, writer, args.burst, [pid] if pid else [])
    steady = await measure_steady(name, harness, writer, args.rate, args.seconds, port)
    harness.close()
    return {"burst": burst, "steady": steady}


# The encodings the (a) server is measured with besides plain JSON: (name, Client options).
VARIANTS = {"a_deflate": {"deflate": True}, "a_msgpack": {"msgpack": True}}
SIZES = {"small": 200, "50 KB": 50_000}  # memory content, in characters


async def wire_sizes(port: int, path: str, writer: Writer) -> dict:
    """Bytes on the wire (frame headers included) of one memory.created frame, per encoding and size."""
    loop = asyncio.get_running_loop()
    sizes: dict = {}
    for name, options in {
        "json": {},
        "json+deflate": {"deflate": True},
        "msgpack": {"msgpack": True},
        "msgpack+deflate": {"deflate": True, "msgpack": True},
    }.items():
        harness = Harness()
        await harness.open(port, path, 1, subscribe=True, **options)
        sizes[name] = {}
        for label, chars in SIZES.items():
            harness.count, wire = 0, harness.wire
            await loop.run_in_executor(None, lambda chars=chars: writer.ask(do="sized", chars=chars))
            await harness.wait_for(1)
            await asyncio.sleep(0.2)  # nothing else comes, but let it show if it does
            sizes[name][label] = harness.wire - wire
        harness.close()
    say(f"bytes on the wire: {sizes}")
    return sizes


async def idle_memory(
    name: str,
    process: subprocess.Popen,
    port: int,
    path: str,
    n: int,
    subscribe: bool,
    deflate: bool = False,
    settle: float = 2.0,
) -> dict:
    warm = Harness()
    await warm.open(port, path, 10, subscribe=subscribe, deflate=deflate)
    await asyncio.sleep(settle / 2)
    before = rss_mib(process.pid)
    say(f"{name}: opening {n} idle connections")
    harness = Harness()
    await harness.open(port, path, n, subscribe=subscribe, deflate=deflate)
    await asyncio.sleep(settle)
    after = rss_mib(process.pid)
    closed = sum(1 for c in harness.clients if c.transport.is_closing())
    harness.close()
    warm.close()
    per_connection_kib = (after - before) * 1024 / n
    say(f"{name}: {per_connection_kib:.1f} KiB per idle connection ({closed} of {n} closed)")
    return {
        "connections": n,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "kib_per_connection": per_connection_kib,
    }


def ensure_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if it does not exist."""
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


async def run(args) -> dict:
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/puomemo_bench")
    ensure_database(database_url)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-a-secret",
        "PYTHONPATH": str(ROOT),
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "10000",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "10000",
    }
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "parameters": vars(args),
    }
    say(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    # (a) PUO Memo
    port = free_port()
    serve = ["manage.py", "serve", "--no-worker", "--workers", "1", "--port", str(port)]
    if args.profile:  # the server under pyinstrument; its report is written when it stops
        profile = logs / "puomemo-profile.txt"
        serve = ["-m", "pyinstrument", "--renderer", "text", "--outfile", str(profile), *serve]
    server = start([PY, *serve], env, port, logs / "puomemo.log")
    writer = Writer("puomemo", env)
    try:
        results["server_rss_mib"] = {"serve --no-worker, idle": rss_mib(server.pid)}
        path = f"/ws?token={writer.hello['key']}"
        results["a"] = await measure("(a) PUO Memo", port, path, writer, args, True, server.pid)
        for key, options in VARIANTS.items():
            results[key] = await measure(f"(a) {key[2:]}", port, path, writer, args, True, server.pid, **options)
        results["wire_bytes"] = await wire_sizes(port, path, writer)
        say("sync publish: 1,000 calls, then 10 transactions of 200 events")
        results["sync_publish_events_per_s"] = writer.ask(do="publish_speed")
        say(f"sync publish: {results['sync_publish_events_per_s']}")
        results["idle_memory_puomemo"] = await idle_memory(
            "(a) PUO Memo", server, port, f"/ws?token={writer.hello['key']}", args.idle, True
        )
        results["idle_memory_puomemo_deflate"] = await idle_memory(
            "(a) PUO Memo, permessage-deflate", server, port, f"/ws?token={writer.hello['key']}", args.idle, True, True
        )
        say("first search (loads the embedding model)")
        request = (
            "GET /api/v4/memories/search?q=bench HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {writer.hello['key']}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), TIMEOUT) as s:
            s.sendall(request.encode())
            status = s.recv(100).split(b"\r\n")[0].decode()
        results["server_rss_mib"]["serve --no-worker, after the first search"] = rss_mib(server.pid)
        say(f"search answered {status}; RSS {results['server_rss_mib']}")
    finally:
        writer.stop()
        stop(server, signal.SIGINT if args.profile else signal.SIGTERM)
    if args.profile:
        say(f"profile of (a): {profile}")

    # (a) again, compressing with each connection's own context (the setting off): what the default saves
    port = free_port()
    takeover = {**env, "PUOMEMO_WS_COMPRESSION_NO_CONTEXT_TAKEOVER": "0"}
    server = start(
        [PY, "manage.py", "serve", "--no-worker", "--workers", "1", "--port", str(port)],
        takeover,
        port,
        logs / "takeover.log",
    )
    writer = Writer("puomemo", takeover)
    try:
        path = f"/ws?token={writer.hello['key']}"
        name = "(a) deflate, context takeover"
        results["a_deflate_takeover"] = await measure(name, port, path, writer, args, True, server.pid, deflate=True)
        results["wire_bytes_takeover"] = await wire_sizes(port, path, writer)
    finally:
        writer.stop()
        stop(server)

    # (b) the naive Channels pattern
    port = free_port()
    daphne = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.naive_channels:application"]
    server = start(daphne, env, port, logs / "naive.log")
    writer = Writer("channels", env)
    try:
        results["b"] = await measure("(b) naive Channels", port, "/ws", writer, args, False)
    finally:
        writer.stop()
        stop(server)

    # The bare consumer: idle memory baseline
    port = free_port()
    daphne[6] = str(port)
    server = start(daphne, env, port, logs / "bare.log")
    try:
        results["idle_memory_bare_channels"] = await idle_memory(
            "bare Channels consumer", server, port, "/bare", args.idle, False
        )
    finally:
        stop(server)

    # (c) the ceiling
    port = free_port()
    server = start([PY, "bench/ceiling.py", "--port", str(port), "--redis", redis_url], env, port, logs / "ceiling.log")
    writer = Writer("ceiling", env)
    try:
        results["c"] = await measure("(c) websockets.broadcast", port, "/", writer, args, False)
    finally:
        writer.stop()
        stop(server)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def report(results: dict) -> None:
    rate = {k: results[k]["burst"]["deliveries_per_s"] for k in "abc"}
    print()
    print(
        f"{results['parameters']['subscribers']} subscribers, burst of {results['parameters']['burst']} events, "
        f"then {results['parameters']['rate']} writes/s for {results['parameters']['seconds']} s"
    )
    print(f"{'':28} {'deliveries/s':>13} {'burst p50':>10} {'burst p99':>10} {'steady p50':>11} {'steady p99':>11}")
    names = {"a": "(a) PUO Memo", "b": "(b) naive Channels", "c": "(c) websockets.broadcast"}
    for k in "abc":
        burst, steady = results[k]["burst"], results[k]["steady"]
        print(
            f"{names[k]:28} {burst['deliveries_per_s']:13,.0f}"
            f" {burst['latency_p50_ms']:8.0f}ms {burst['latency_p99_ms']:8.0f}ms"
            f" {steady['latency_p50_ms']:9.1f}ms {steady['latency_p99_ms']:9.1f}ms"
        )
    variants = [*VARIANTS, "a_deflate_takeover"]
    for key in variants:
        burst, steady = results[key]["burst"], results[key]["steady"]
        print(
            f"{'(a) ' + key[2:].replace('_', ' '):28} {burst['deliveries_per_s']:13,.0f}"
            f" {burst['latency_p50_ms']:8.0f}ms {burst['latency_p99_ms']:8.0f}ms"
            f" {steady['latency_p50_ms']:9.1f}ms {steady['latency_p99_ms']:9.1f}ms"
        )
    print(f"{'(a) server, burst:':28} {'CPU us/delivery':>16} {'wire bytes/delivery':>20} {'deliveries/s vs json':>21}")
    for key in ("a", *variants):
        burst, label = results[key]["burst"], "json" if key == "a" else key[2:].replace("_", " ")
        print(
            f"{'  ' + label:28} {burst['server_cpu_us_per_delivery']:16.1f}"
            f" {burst['wire_bytes_per_delivery']:20.0f} {burst['deliveries_per_s'] / rate['a']:20.2f}x"
        )
    print("bytes on the wire of one memory.created frame:")
    for name, sizes in results["wire_bytes"].items():
        print(f"  {name:26} " + "   ".join(f"{label}: {size:,} B" for label, size in sizes.items()))
    for name, sizes in results["wire_bytes_takeover"].items():
        if "deflate" in name:
            line = "   ".join(f"{label}: {size:,} B" for label, size in sizes.items())
            print(f"  {name + ', context takeover':26} {line}")
    a_b, a_c = rate["a"] / rate["b"], rate["a"] / rate["c"]
    results["ratios"] = {"a/b": a_b, "a/c": a_c}
    print(f"a/b = {a_b:.2f}x (target >= 6x)   a/c = {a_c:.2f}x (target >= 0.6x)")
    sync = results["sync_publish_events_per_s"]
    print(
        f"sync publish: {sync['one_call_each']:,.0f} events/s one call each, "
        f"{sync['200_per_transaction']:,.0f} events/s 200 per transaction (target >= 5,000)"
    )
    ours, bare = results["idle_memory_puomemo"], results["idle_memory_bare_channels"]
    ratio = ours["kib_per_connection"] / bare["kib_per_connection"]
    results["ratios"]["idle_memory"] = ratio
    print(
        f"idle memory at {ours['connections']} connections: {ours['kib_per_connection']:.1f} KiB each, "
        f"bare Channels consumer {bare['kib_per_connection']:.1f} KiB: {ratio:.2f}x (target <= 1.1x)"
    )
    deflated = results["idle_memory_puomemo_deflate"]
    results["ratios"]["idle_memory_deflate"] = deflated["kib_per_connection"] / bare["kib_per_connection"]
    print(
        f"idle memory with permessage-deflate (subscribe sent compressed): {deflated['kib_per_connection']:.1f} KiB"
        f" each: {results['ratios']['idle_memory_deflate']:.2f}x the bare consumer (target <= 1.1x)"
    )
    steady = results["a"]["steady"]
    print(
        f"steady p99 write-to-receipt (a): {steady['latency_p99_ms']:.1f} ms (target <= 50 ms)"
        f" at {steady['writes_per_s']:.0f} writes/s achieved"
    )
    print("server RSS: " + ", ".join(f"{k}: {v:.0f} MiB" for k, v in results["server_rss_mib"].items()))
    load = results["machine"]
    print(
        f"load average: {load['load_average_at_start'][0]:.2f} at start,"
        f" {load['load_average_at_end'][0]:.2f} at end, {load['cpus']} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--idle", type=int, default=2000, help="idle connections for the memory comparison")
    parser.add_argument("--json", default="bench/fanout-results.json")
    parser.add_argument("--logs", default=str(Path(tempfile.gettempdir()) / "puomemo-bench"))
    parser.add_argument("--profile", action="store_true", help="profile the (a) server with pyinstrument")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive)
        return
    started = time.monotonic()
    results = asyncio.run(run(args))
    results["seconds"] = time.monotonic() - started
    report(results)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"results: {args.json} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
