#!/usr/bin/env python3
"""Runs the commands of docs/tutorial.md in order and compares what they print with what the
tutorial shows, so that a change that breaks the tutorial fails CI.

The tutorial's conventions, which this runner reads:
  - a ```sh block holds commands; they run with bash from the repository's root;
  - a ```output block right after it is what those commands print (stdout); it is compared
    after volatile values (dates, request ids, event ids, times) are masked on both sides;
  - an HTML comment `<!-- tutorial: skip -->` just before a ```sh block leaves it out (starting,
    resetting and stopping the whole platform, the Docker variants);
  - a block that only reads (no -X, no -d, no scripts/ or publish) is run again, for up to
    15 s, until its output matches: events reach the next service a moment after the request.

Usage: tutorial.py docs/tutorial.md   (against a fresh stack on the book's ports)
Prints `tutorial: N passed, M failed` last, N and M counting command blocks.
"""

import re
import subprocess
import sys
import time

FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = "<!-- tutorial: skip -->"
RETRY_FOR = 15.0

VOLATILE = [
    (re.compile(r"^(date|x-request-id): .*$", re.IGNORECASE | re.MULTILINE), r"\1: <volatile>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
]


def blocks(markdown):
    """Yields (line number, kind, text, skipped) for each fenced block."""
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
        yield start, kind, "\n".join(body), previous == SKIP
        previous = ""


def normalise(text):
    text = text.replace("\r\n", "\n")
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def only_reads(command):
    return not re.search(r"(-X\s|\s-d\s|\s-d'|scripts/|publish)", command)


def run(command):
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def main(path):
    parsed = list(blocks(open(path, encoding="utf-8").read()))
    passed = failed = 0
    for index, (line, kind, text, skipped) in enumerate(parsed):
        if kind != "sh" or skipped:
            continue
        expected = None
        if index + 1 < len(parsed) and parsed[index + 1][1] == "output":
            expected = normalise(parsed[index + 1][2])
        deadline = time.monotonic() + (RETRY_FOR if only_reads(text) else 0)
        while True:
            code, stdout, stderr = run(text)
            ok = code == 0 and (expected is None or normalise(stdout) == expected)
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
            print(f"--- the tutorial shows\n{expected}\n--- it printed\n{normalise(stdout)}",
                  flush=True)
    print(f"tutorial: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/tutorial.md"))
