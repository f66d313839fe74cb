"""Redis's own CPU per unit of PUO Memo's work, for the sizing table in docs/deployment.md.

Starts a redis-server of its own on a free port and reads its CPU time (INFO cpu) around each step:
- PUBLISH of an event-sized message (600 bytes) to a tenant channel that 0, 1, 4 or 16 server processes subscribe to,
  one per round trip (a single write) and 100 per pipeline (a transaction's events, realtime/layers.py);
- the connection registry's acquire script, once per connect (realtime/limits.py);
- its re-stamp of one connection (3 ZADD, HSET and the keys' EXPIRE), which every process makes for each of its
  connections every PUOMEMO_WS_REGISTRY_REFRESH_SECONDS, pipelined as realtime/limits.py does.

Run: python bench/redis_costs.py [--events 20000]
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The registry's script and keys as the server uses them.
from realtime.limits import _ACQUIRE, _keys, _who, _who_key

MESSAGE = b"x" * 600
CHANNEL = "asgi__group__puomemo.tenant.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def subscriber(port: int, stop: threading.Event) -> None:
    """A server process's subscription: read and drop everything, as fast as Redis sends it."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"SUBSCRIBE {CHANNEL}\r\n".encode())
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.recv(1 << 20)
            except TimeoutError:
                continue


def publish_cost(client: redis.Redis, port: int, subscribers: int, batch: int, events: int) -> float:
    """Redis CPU microseconds per PUBLISH."""
    stop = threading.Event()
    threads = [threading.Thread(target=subscriber, args=(port, stop), daemon=True) for _ in range(subscribers)]
    for thread in threads:
        thread.start()
    while client.pubsub_numsub(CHANNEL)[0][1] < subscribers:
        time.sleep(0.01)
    before = cpu_seconds(client)
    for _ in range(events // batch):
        with client.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.publish(CHANNEL, MESSAGE)
            pipe.execute()
    spent = cpu_seconds(client) - before
    stop.set()
    for thread in threads:
        thread.join()
    return spent / events * 1e6


def acquire_cost(client: redis.Redis, connections: int) -> float:
    """Redis CPU microseconds per acquire (one connect), 100 tenants of up to 100 connections each."""
    script = client.register_script(_ACQUIRE)
    before = cpu_seconds(client)
    now = time.time()
    for i in range(connections):
        user, tenant = i, i % 100
        keys = [*_keys(user, tenant), _who_key(tenant)]
        script(keys=keys, args=[f"c{i}", now, now + 30, 5, 10_000, 30, _who(user, "u")])
    return (cpu_seconds(client) - before) / connections * 1e6


def restamp_cost(client: redis.Redis, connections: int) -> float:
    """Redis CPU microseconds per connection re-stamped (realtime/limits.py refresh), 500 per pipeline."""
    before = cpu_seconds(client)
    expires = time.time() + 30
    for start in range(0, connections, 500):
        with client.pipeline(transaction=False) as pipe:
            keys = set()
            for i in range(start, min(start + 500, connections)):
                user, tenant = i, i % 100
                for key in _keys(user, tenant):
                    pipe.zadd(key, {f"c{i}": expires})
                    keys.add(key)
                pipe.hset(_who_key(tenant), f"c{i}", _who(user, "u"))
                keys.add(_who_key(tenant))
            for key in keys:
                pipe.expire(key, 30)
            pipe.execute()
    return (cpu_seconds(client) - before) / connections * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    port = free_port()
    directory = tempfile.mkdtemp(prefix="puomemo-redis-costs-")
    server = subprocess.Popen(  # noqa: S603  (our own arguments)
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        results = {"publish_us": {}}
        print("Redis CPU per unit of work (µs), one redis-server, a 600-byte event")
        for subscribers in (0, 1, 4, 16):
            for batch in (1, 100):
                cost = publish_cost(client, port, subscribers, batch, args.events if batch > 1 else args.events // 4)
                results["publish_us"][f"{subscribers} subscribers, {batch} per round trip"] = round(cost, 2)
                print(f"  PUBLISH to {subscribers:>2} subscribing processes, {batch:>3} per round trip: {cost:6.2f}")
        results["acquire_us"] = round(acquire_cost(client, args.events // 2), 2)
        results["restamp_us"] = round(restamp_cost(client, args.events * 2), 2)
        print(f"  registry acquire (a connect):        {results['acquire_us']:6.2f}")
        print(f"  registry re-stamp of one connection: {results['restamp_us']:6.2f}")
        print(json.dumps(results))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
