"""The README's examples, run as written (with the installed library) against a live
server: alice sends a picture, then bob receives and saves it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness import Server, png, token

README = Path(__file__).resolve().parents[1] / "README.md"


def example(name: str) -> str:
    """The code of the README's block between <!-- example NAME --> markers."""
    text = README.read_text()
    found = re.search(
        rf"<!-- example {name} -->\s*```python\n(.*?)```\s*<!-- /example {name} -->", text, re.S
    )
    assert found, f"README.md has no example {name}"
    return found.group(1)


def run(code: str, server: Server, user: str, cwd: Path) -> str:
    env = dict(os.environ, COURIER_SERVER=server.url, COURIER_TOKEN=token(user))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_examples_run_as_written(server: Server, tmp_path: Path) -> None:
    send = example("send")
    assert len(send.strip().splitlines()) <= 10, "the example stays ten lines"
    picture = png(40, 30)
    (tmp_path / "cat.png").write_bytes(picture)
    out = run(send, server, "alice", tmp_path)
    assert f"{len(picture)}/{len(picture)} bytes" in out
    assert re.search(r"uploaded cat\.png 40x30 as [0-9a-f]{32}", out), out
    assert "sent to bob: cached" in out

    out = run(example("receive"), server, "bob", tmp_path)
    assert "alice sent inbox/cat.png" in out, out
    assert (tmp_path / "inbox" / "cat.png").read_bytes() == picture
