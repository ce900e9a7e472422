#!/usr/bin/env python3
"""Runs the commands of docs/tutorial.md in order and compares what they print with what the
tutorial shows, so that a change that breaks the tutorial fails CI.

The tutorial's conventions, which this runner reads:
  - a ```sh block holds commands; they run with bash from the repository's root;
  - a ```output block after it is what those commands print (stdout); it is compared after
    volatile values (dates, request ids, event ids, times) are masked on both sides. The
    block's other form (below) may stand between the two: both print the same;
  - an HTML comment just before a ```sh block marks it: `<!-- tutorial: skip -->` leaves it out
    (starting, resetting and stopping the whole platform); `<!-- tutorial: native -->` is the
    form for the platform scripts/dev.sh runs, `<!-- tutorial: compose -->` the form for the
    one docker compose runs. Unmarked blocks are the same for both;
  - variables whose names end in `_TOKEN` (the bearer tokens of section 0) are kept from one
    block to the next, as in the reader's shell;
  - a block that only reads (no -X, no -d, no scripts/, publish or docker compose stop/start)
    is run again, for up to 15 s, until its output matches: events reach the next service a
    moment after the request.

Usage:
  tutorial.py docs/tutorial.md            the native forms, against a fresh platform
  tutorial.py --compose docs/tutorial.md  the compose forms; OPD_TUTORIAL_COMPOSE, if set, is
                                          the command run for `docker compose` (another project
                                          name or file, or docker-compose v1)
  tutorial.py --busy docs/tutorial.md     on a platform where others were registered first:
                                          the numbers that depend on how many came before
                                          (tokens, stream sequences) are masked too
Prints `tutorial: N passed, M failed` last (tutorial-compose, tutorial-busy), N and M counting
command blocks.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^```(\S*)\s*$")
MARK = re.compile(r"^<!-- tutorial: (skip|native|compose) -->$")
RETRY_FOR = 15.0

VOLATILE = [
    (re.compile(r"^(date|x-request-id): .*$", re.IGNORECASE | re.MULTILINE), r"\1: <volatile>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
]
# What differs on a busy platform: a token counts today's patients, a stream sequence every event,
# and a body holding either is longer.
BUSY = [
    (re.compile(r'"(token|stream_sequence)":\d+'), r'"\1":<n>'),
    (re.compile(r"^content-length: \d+$", re.IGNORECASE | re.MULTILINE), "content-length: <n>"),
]


def blocks(markdown):
    """Yields (line number, kind, text, mark) for each fenced block; mark is the word of the
    `<!-- tutorial: … -->` comment just before it, or None."""
    lines = markdown.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        kind, start = match.group(1), i + 1
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        mark = MARK.match(previous)
        yield start, kind, "\n".join(body), mark.group(1) if mark else None
        previous = ""


def normalise(text, masks):
    text = text.replace("\r\n", "\n")
    for pattern, replacement in masks:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def only_reads(command):
    return not re.search(r"(-X\s|\s-d\s|\s-d'|scripts/|publish|docker compose (stop|start))",
                         command)


def run(command, state):
    """Runs `command` in bash after the variables `state` (a file) holds, and saves its
    `*_TOKEN` variables there for the next block."""
    script = (f'[ -f "{state}" ] && source "{state}"\n{command}\n'
              f'for v in $(compgen -v | grep "_TOKEN$" || true); do declare -p "$v"; done > "{state}"')
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def expected_after(parsed, index, form):
    """The output block that belongs to the sh block at `index`, past the other form's block."""
    for _, kind, text, mark in parsed[index + 1:]:
        if kind == "output":
            return text
        if kind != "sh" or mark not in ("native", "compose") or mark == form:
            return None
    return None


def main(path, form, busy):
    parsed = list(blocks(open(path, encoding="utf-8").read()))
    masks = VOLATILE + (BUSY if busy else [])
    compose = os.environ.get("OPD_TUTORIAL_COMPOSE")
    passed = failed = 0
    state = tempfile.NamedTemporaryFile(prefix="opd-tutorial-", suffix=".sh", delete=False).name
    os.unlink(state)
    for index, (line, kind, text, mark) in enumerate(parsed):
        if kind != "sh" or mark == "skip" or mark not in (None, form):
            continue
        expected = expected_after(parsed, index, form)
        if expected is not None:
            expected = normalise(expected, masks)
        command = text.replace("docker compose ", f"{compose} ") if compose else text
        deadline = time.monotonic() + (RETRY_FOR if only_reads(text) else 0)
        while True:
            code, stdout, stderr = run(command, state)
            ok = code == 0 and (expected is None or normalise(stdout, masks) == expected)
            if ok or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        where = f"{path}:{line}"
        if ok:
            passed += 1
            print(f"ok    {where}", flush=True)
            continue
        failed += 1
        print(f"FAIL  {where}\n$ {text}", flush=True)
        if code != 0:
            print(f"exit status {code}\n{stderr.strip()}", flush=True)
        else:
            print(f"--- the tutorial shows\n{expected}\n--- it printed\n{normalise(stdout, masks)}",
                  flush=True)
    if os.path.exists(state):
        os.unlink(state)
    name = "tutorial" + ("-compose" if form == "compose" else "") + ("-busy" if busy else "")
    print(f"{name}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Runs a tutorial's commands and checks their output.")
    parser.add_argument("path", nargs="?", default="docs/tutorial.md")
    parser.add_argument("--compose", action="store_true", help="the docker compose forms")
    parser.add_argument("--busy", action="store_true", help="others were registered first")
    args = parser.parse_args()
    sys.exit(main(args.path, "compose" if args.compose else "native", args.busy))
