"""The docs site builds with `mkdocs build --strict`, the README is a front page, and nothing points into old places."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = [sys.executable, "-m", "mkdocs"]


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of a config into a directory of its own."""
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def tracked_files() -> list[Path]:
    """The files git tracks (and new ones not ignored) in the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def test_the_docs_site_builds_strictly(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    pages = {path.parent.name for path in (tmp_path / "site").glob("*/index.html")}
    assert {"protocol", "rest-api", "configuration", "deployment", "embeddings", "performance"} <= pages
    assert {"testing", "architecture", "clients", "web-ui"} <= pages


@pytest.mark.parametrize(
    ("broken", "named"),
    [("[gone](nowhere.md)", "nowhere.md"), ("[gone](protocol.md#no-such-section)", "no-such-section")],
)
def test_a_broken_link_or_anchor_fails_the_build(tmp_path, broken, named):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as index:
        index.write(f"\n{broken}\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert named in result.stderr


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    assert "$ make run\n" in text and "$ make test\n" in text
    assert "docs/screenshot-ui.png" in text
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_no_failed_login_example_uses_a_demo_user():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for line in page.read_text().splitlines():
            if "password=guess" in line:
                assert not re.search(r"username=(alice|bob|carol|operator)\b", line), (page.name, line)


# Not pointers to change: this file's own patterns.
NOT_CHECKED = {"tests/test_docs.py"}


def test_code_points_to_docs_pages_not_readme_sections():
    kinds = {".py", ".js", ".mjs", ".conf", ".yaml", ".example"}
    pointer = re.compile(r"README(, | \(|'s)|the README\b|repository's README")
    for path in tracked_files():
        relative = path.relative_to(ROOT).as_posix()
        client_readme = relative.startswith("clients/") and path.name == "README.md"
        if relative in NOT_CHECKED or not (
            path.suffix in kinds or path.name in {"Makefile", "Dockerfile"} or client_readme
        ):
            continue
        found = pointer.search(path.read_text())
        assert found is None, f"{relative}: {found and found.group()}"


def test_nothing_refers_to_files_outside_the_repository():
    gone = ["../" + "shared", "DESIGN" + ".md"]
    for path in tracked_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # images
        for name in gone:
            assert name not in text, f"{path.relative_to(ROOT)} mentions {name}"
