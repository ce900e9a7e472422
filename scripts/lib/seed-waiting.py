#!/usr/bin/env python3
"""Makes the platform on the book's ports a busy one: registers N patients (ids from FIRST up,
clear of the ids the tutorial and the Postman collection use) and waits until every one of them
waits at inspection, counted by following the pending list's `Link` pages.

Usage: OPD_TOKEN=... seed-waiting.py [N] [FIRST]     (defaults: 1000 patients from id 100001)
OPD_TOKEN is a bearer token with the roles registrar and clinician.
"""

import concurrent.futures
import json
import re
import sys
import time
import os
import urllib.request

REGISTRATION = "http://127.0.0.1:9090"
INSPECTION = "http://127.0.0.1:9091"
NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
AUTHORIZATION = {"Authorization": f"Bearer {os.environ.get('OPD_TOKEN', '')}"}


def register(patient):
    body = json.dumps({"id": patient, "full_name": f"waiting patient {patient}"}).encode()
    request = urllib.request.Request(f"{REGISTRATION}/opd/patient/register", data=body,
                                     method="POST", headers={"Content-Type": "application/json", **AUTHORIZATION})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 201:
            raise RuntimeError(f"registering {patient} answered {response.status}")


def waiting(ids):
    """How many of `ids` the whole pending list holds, page by page."""
    found, path = 0, "/opd/inspection/pending?limit=1000"
    while path:
        request = urllib.request.Request(f"{INSPECTION}{path}", headers=AUTHORIZATION)
        with urllib.request.urlopen(request, timeout=30) as response:
            found += sum(1 for entry in json.load(response) if entry["id"] in ids)
            link = NEXT.search(response.headers.get("Link") or "")
        path = link.group(1) if link else None
    return found


def main(count, first):
    ids = set(range(first, first + count))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(register, sorted(ids)))
    deadline = time.monotonic() + 120
    while (found := waiting(ids)) < count:
        if time.monotonic() > deadline:
            print(f"seed: only {found} of {count} patients reached inspection", file=sys.stderr)
            return 1
        time.sleep(1)
    print(f"seed: {count} patients waiting at inspection "
          f"({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
                  int(sys.argv[2]) if len(sys.argv) > 2 else 100001))
