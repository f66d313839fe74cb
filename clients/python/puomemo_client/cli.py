"""The command line: `python -m puomemo_client tail` prints the events of /ws as JSON lines."""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any, TextIO

from puomemo_client.client import (
    DEFAULT_CHANNELS,
    ENCODINGS,
    Encoding,
    PuoMemoClient,
    PuoMemoClosedError,
    load_msgpack,
)

# Exit statuses: 0 after Ctrl-C or SIGTERM, 2 for a bad command line (argparse), and one a stop code.
EXIT_STATUS = {4001: 3, 4003: 4, 1009: 5}
CLOSE_MEANING = {
    4001: "the server refused the token (invalid, expired or revoked)",
    4003: "the server refused the client's messages (invalid format)",
    1009: "a message was larger than the server's limit",
}
EPILOG = """\
Each event frame (memory.*, tenant.*, and custom.* with --channels ...,custom) is printed on stdout as one
JSON object a line, whatever the --encoding on the wire; status messages go to stderr. The token may come
from the environment (PUOMEMO_TOKEN) so it stays out of the shell history.
Exit status: 0 after Ctrl-C or SIGTERM; 3 when the server refuses the token (close code 4001); 4 on 4003;
5 on 1009; 2 for a bad command line. Other closes reconnect with backoff (1 s doubling to 60 s, jittered).
"""


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _channels(text: str) -> list[str]:
    channels = [channel.strip() for channel in text.split(",") if channel.strip()]
    if not channels:
        raise argparse.ArgumentTypeError("name at least one channel")
    return channels


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    root = argparse.ArgumentParser(prog="python -m puomemo_client", description="PUO Memo's real-time client.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tail = commands.add_parser(
        "tail",
        help="print the events of /ws as JSON lines",
        description="Connect to /ws, subscribe, and print every event frame as one JSON line, reconnecting.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--url", default="ws://127.0.0.1:8000/ws", help="the /ws URL (default: %(default)s)")
    tail.add_argument("--token", help="a JWT access token or an API key (default: $PUOMEMO_TOKEN)")
    tail.add_argument(
        "--channels", type=_channels, default=",".join(DEFAULT_CHANNELS), help="comma-separated (default: %(default)s)"
    )
    tail.add_argument("--last-seq", type=_whole, help="resume after this event position (`seq`)")
    tail.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="json",
        help="frames on the wire: msgpack asks for MessagePack (needs the msgpack extra) (default: %(default)s)",
    )
    tail.add_argument(
        "--no-compression",
        dest="compression",
        action="store_const",
        const=None,
        default="deflate",
        help="do not offer permessage-deflate",
    )
    return root


async def tail(
    url: str,
    token: str,
    channels: list[str],
    last_seq: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    encoding: Encoding = "json",
    compression: str | None = "deflate",
) -> int:
    """Print the event frames until a signal (0) or a stop code (its exit status)."""
    client = PuoMemoClient(token, url, channels=channels, last_seq=last_seq, encoding=encoding, compression=compression)

    def status(message: str) -> None:
        print(f"puomemo_client: {message}", file=err, flush=True)

    def frame(data: dict[str, Any]) -> None:
        if "." not in data["type"]:
            return  # a reply to this client (subscribed, pong, resumed...), not an event
        try:
            print(json.dumps(data, ensure_ascii=False), file=out, flush=True)
        except BrokenPipeError:  # the reader went away (`| head -n 1`): stop quietly
            asyncio.get_running_loop().create_task(client.disconnect())

    def state(change: dict[str, Any]) -> None:
        if change["state"] == "connecting" and change["previous"] == "closed":
            status(f"connecting to {url}")
        elif change["state"] == "open":
            position = f"; at seq {client.last_seq}" if client.last_seq is not None else ""
            # Asked for MessagePack: say what the server chose (one that does not know it answers in JSON).
            wire = f" over {client.connection_encoding or 'json'}" if encoding == "msgpack" else ""
            status(f"connected{wire}; subscribed to {', '.join(client.channels)}{position}")
        elif change["state"] == "reconnecting":
            status(f"connection closed ({change['code']}); reconnecting in {change['delay']:.1f} s")

    client.on("*", frame)
    client.on("state", state)
    client.on("resumed", lambda data: status(f"resumed at seq {data['last_seq']}"))
    client.on("resync_required", lambda data: status(f"events missed ({data['reason']}): reload over REST"))
    client.on("error", lambda data: status(f"server error: {data.get('message')}"))

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: loop.create_task(client.disconnect()))
    try:
        await client.connect()
    except PuoMemoClosedError as stopped:
        reason = f": {stopped.reason}" if stopped.reason else ""
        status(f"stopped: close code {stopped.code}, {CLOSE_MEANING[stopped.code]}{reason}")
        return EXIT_STATUS[stopped.code]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    status("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    token = args.token or os.environ.get("PUOMEMO_TOKEN")
    if not token:
        parser().error("a token is needed: --token TOKEN or the environment variable PUOMEMO_TOKEN")
    if args.encoding == "msgpack":
        try:
            load_msgpack()
        except ImportError as missing:
            parser().error(str(missing))
    logging.basicConfig(level=logging.WARNING, format="puomemo_client: %(message)s", stream=sys.stderr)
    return asyncio.run(
        tail(args.url, token, args.channels, args.last_seq, encoding=args.encoding, compression=args.compression)
    )
