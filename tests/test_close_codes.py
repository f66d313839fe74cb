"""Close codes are said once (realtime.protocol.CloseCode): both clients and the docs agree with it."""

import re
from pathlib import Path

from realtime.protocol import BACKOFF_CODES, RESTART_CODES, STOP_CODES, CloseCode

ROOT = Path(__file__).resolve().parent.parent
# Codes the docs list that the server never sends itself: a normal close, and a dropped TCP connection.
NOT_SENT = {1000, 1006}


def documented() -> dict[int, str]:
    """docs/protocol.md's close-code table: code -> what a client should do."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    return {int(code): action.strip() for code, action in re.findall(r"^\| (\d{4}) \|.*\| ([^|]+) \|$", section, re.M)}


def js_codes(name: str) -> set[int]:
    source = (ROOT / "clients" / "js" / "puomemo-client.js").read_text()
    return {int(code) for code in re.search(rf"{name} = Object\.freeze\(\[([^\]]*)\]\)", source).group(1).split(",")}


def python_codes(name: str) -> set[int]:
    source = (ROOT / "clients" / "python" / "puomemo_client" / "client.py").read_text()
    return {
        int(code) for code in re.search(rf"^{name} = frozenset\(\{{([^}}]*)\}}\)", source, re.M).group(1).split(",")
    }


def test_the_docs_list_every_code_the_server_sends_and_no_other():
    assert set(documented()) == set(CloseCode) | NOT_SENT


def test_the_docs_tell_clients_to_stop_back_off_or_come_back_at_once_on_the_same_codes():
    actions = documented()
    assert {code for code, action in actions.items() if action.startswith("stop")} == STOP_CODES
    assert {code for code, action in actions.items() if "after backoff" in action} == BACKOFF_CODES
    assert {code for code, action in actions.items() if action.startswith("reconnect at once")} == RESTART_CODES


def test_the_js_client_acts_on_the_same_codes():
    assert js_codes("STOP_CODES") == STOP_CODES
    assert js_codes("BACKOFF_CODES") == BACKOFF_CODES
    assert js_codes("RESTART_CODES") == RESTART_CODES


def test_the_python_client_and_its_cli_act_on_the_same_codes():
    assert python_codes("STOP_CODES") == STOP_CODES
    assert python_codes("BACKOFF_CODES") == BACKOFF_CODES
    assert python_codes("RESTART_CODES") == RESTART_CODES
    cli = (ROOT / "clients" / "python" / "puomemo_client" / "cli.py").read_text()
    exit_codes = re.search(r"^EXIT_STATUS = \{([^}]*)\}", cli, re.M).group(1)
    assert {int(code) for code in re.findall(r"(\d{4}):", exit_codes)} == STOP_CODES
