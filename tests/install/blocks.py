#!/usr/bin/env python3
"""Prints, as one shell script, the install steps that a client's README marks.

    tests/install/blocks.py client/<lang>/README.md

A README marks each step of "install it in your own project, then run the first
example" with a pair of HTML comments around a fenced block, in the order a reader
follows them:

    <!-- install: run -->        the block's shell commands, run as they are
    <!-- install: file PATH -->  the block's text, saved as PATH (folders made)
    ...the fenced block (other marker comments inside are fine)...
    <!-- /install -->

The script this prints runs every step in that order in one shell, so that what a
step does (a `cd`, an `export`) holds for the next, as in a reader's terminal; it
echoes each step before running it. Nothing is changed on the way: what runs is
what the README says.
"""

import re
import shlex
import sys
from pathlib import Path

MARKER = re.compile(
    r"^<!-- install: (?P<what>run|file (?P<path>\S+)) -->\n(?P<body>.*?)^<!-- /install -->$",
    re.MULTILINE | re.DOTALL,
)
FENCE = re.compile(r"^```[^\n]*\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def steps(readme: str) -> list[tuple[str | None, str]]:
    """(path or None for commands, text) of every marked block, in order."""
    found = []
    for m in MARKER.finditer(readme):
        fence = FENCE.search(m["body"])
        if fence is None:
            raise SystemExit(f"an install marker without a fenced block: {m.group(0)[:80]!r}")
        found.append((m["path"], fence["code"]))
    return found


def main() -> None:
    readme = Path(sys.argv[1])
    found = steps(readme.read_text())
    if not any(path is None for path, _ in found):
        raise SystemExit(f"{readme} marks no install commands (<!-- install: run -->)")
    out = ["set -euo pipefail"]
    for i, (path, code) in enumerate(found, 1):
        if path is None:
            out.append(f"printf '\\n--- step {i}: run (from {readme})\\n%s' {shlex.quote(code)} >&2")
            out.append(code.rstrip("\n"))
        else:
            # A delimiter no README block contains.
            eof = "COURIER_INSTALL_EOF"
            assert eof not in code
            out.append(f"printf '\\n--- step {i}: write %s (from {readme})\\n' {shlex.quote(path)} >&2")
            out.append(f"mkdir -p \"$(dirname {shlex.quote(path)})\"")
            out.append(f"cat >{shlex.quote(path)} <<'{eof}'\n{code}{eof}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
