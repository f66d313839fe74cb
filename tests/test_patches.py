"""The guards of the server patches: each passes on the installed libraries and refuses others in one line."""

import dataclasses
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from daphne.server import Server
from twisted.web.http import HTTPChannel

from puomemo import http_limits, patches
from puomemo.patches import PATCHES, PatchError, check_patch
from realtime import daphne

ROOT = Path(__file__).resolve().parent.parent

EACH_PATCH = [
    pytest.param(where, patch, id=f"{where}:{patch.library}") for where, table in PATCHES.items() for patch in table
]


@pytest.fixture(autouse=True)
def unchecked():
    """Each test checks afresh: the guard remembers the modules that passed."""
    patches._passed.clear()
    yield
    patches._passed.clear()


@pytest.mark.parametrize(("where", "patch"), EACH_PATCH)
def test_each_guard_passes_on_the_installed_version(where, patch):
    check_patch(where, patch)
    low, high = patch.versions
    installed = patches.version_tuple(metadata.version(patch.library))
    assert patches.version_tuple(low) <= installed < patches.version_tuple(high)


@pytest.mark.parametrize(("where", "patch"), EACH_PATCH)
def test_each_guard_refuses_a_missing_name_in_one_line(where, patch):
    renamed = f"{patch.names[0]}_renamed"
    with pytest.raises(PatchError) as refused:
        check_patch(where, dataclasses.replace(patch, names=(*patch.names, renamed)))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{where} patches {patch.library} ")
    assert f"which has no {renamed}: refusing to start" in message


@pytest.mark.parametrize(("where", "patch"), EACH_PATCH)
def test_each_guard_refuses_a_version_out_of_range_in_one_line(where, patch):
    low, high = patch.versions
    for outside in (high, f"{high}.1", "0.1"):
        with pytest.raises(PatchError) as refused:
            check_patch(where, patch, installed=outside)
        message = str(refused.value)
        assert "\n" not in message
        assert f"{where} patches {patch.library} {outside}, but was written for >={low},<{high}" in message
    check_patch(where, patch, installed=low)


def test_the_table_names_every_library_a_patch_touches():
    assert {(where, patch.library) for where, table in PATCHES.items() for patch in table} == {
        ("realtime.daphne", "daphne"),
        ("realtime.daphne", "Twisted"),
        ("realtime.daphne", "autobahn"),
        ("puomemo.http_limits", "daphne"),
        ("puomemo.http_limits", "Twisted"),
        ("realtime.layers", "channels-redis"),
    }


def test_instance_attributes_are_found_in_the_class_source_and_typos_are_not():
    assert patches.has_name("twisted.internet.tcp.Connection._tempDataLen")  # set in FileDescriptor.__init__
    assert patches.has_name("autobahn.websocket.protocol.WebSocketProtocol._perMessageCompress")
    assert not patches.has_name("twisted.internet.tcp.Connection._tempDataLength")
    assert not patches.has_name("twisted.internet.tcpx.Connection")


def test_install_refuses_when_a_private_name_is_gone(monkeypatch):
    monkeypatch.delattr(Server, "create_application")  # as if daphne had renamed it
    with pytest.raises(PatchError, match=r"realtime\.daphne patches daphne .* has no daphne\.server\.Server\."):
        daphne.install()
    monkeypatch.delattr(HTTPChannel, "_respondToBadRequestAndDisconnect")
    with pytest.raises(PatchError, match=r"puomemo\.http_limits patches Twisted .*\._respondToBadRequestAndDisconnect"):
        http_limits.install()


def test_the_asgi_application_refuses_to_start_in_one_line():
    script = "import twisted.web.http as h; del h.HTTPChannel._respondToBadRequestAndDisconnect; import puomemo.asgi"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "puomemo.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("puomemo: ")]
    assert lines == [
        f"puomemo: puomemo.http_limits patches Twisted {metadata.version('Twisted')}, which has no"
        " twisted.web.http.HTTPChannel._respondToBadRequestAndDisconnect: refusing to start (see puomemo/patches.py)."
    ]
    assert "Traceback" not in result.stderr
