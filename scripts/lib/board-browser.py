#!/usr/bin/env python3
"""The waiting-room board as a person sees it, in headless Chromium driven over the DevTools
protocol, against a platform that scripts/dev.sh runs:

1. open the board's page (no route to the internet: it must work from what the service sends);
2. register a patient and wait for their token in the inspection column: the time from the
   registration's answer to the token on screen is reported, and must be under a second;
3. record their inspection: the token moves to treatment, and inspection calls it;
4. stop the board service, register a patient while it is down, start it again: the page
   reconnects by itself (no reload) and shows the new token;
5. the page then shows exactly what GET /opd/board/state says, each token once;
6. a screenshot of the board (--screenshot PATH).

Prints one line per check and `board: N passed, M failed`; exits non-zero if any failed.

    board-browser.py --dev-sh scripts/dev.sh --token-command 'scripts/dev.sh token' \
        [--screenshot target/walkthroughs/board.png]

Needs `chromium` and the `websocket-client` package (scripts/walkthroughs.sh installs both).
"""

import argparse
import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

BOARD = "http://127.0.0.1:9094"
REGISTRATION = "http://127.0.0.1:9090"
INSPECTION = "http://127.0.0.1:9091"
# A registration must be on screen within this long of its answer.
ON_SCREEN_WITHIN_MS = 1000

# Records when each token first appears in each column, and whether the page was reloaded.
WATCH = """
(() => {
  window.__seen = {};
  window.__notReloaded = true;
  const note = () => {
    for (const tile of document.querySelectorAll('[data-stage] li[data-token]')) {
      const key = tile.closest('[data-stage]').dataset.stage + ':' + tile.dataset.site + ':'
        + tile.dataset.token;
      if (!(key in window.__seen)) window.__seen[key] = Date.now();
    }
  };
  note();
  new MutationObserver(note).observe(document.getElementById('board'),
    {subtree: true, childList: true});
  return true;
})()
"""

# The board as the page shows it: each token as its number and site, as the JSON has it.
SHOWN = """
(() => {
  const ticket = (element) => element.dataset.token === undefined ? null
    : {token: Number(element.dataset.token), site: element.dataset.site};
  return Array.from(document.querySelectorAll('[data-stage]')).map((section) => ({
    stage: section.dataset.stage,
    waiting: Array.from(section.querySelectorAll('li[data-token]')).map(ticket),
    called: ticket(section.querySelector('[data-called]')),
  }));
})()
"""


class Browser:
    """One headless Chromium and one page, over the DevTools protocol."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="opd-board-browser-")
        self.process = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--window-size=1600,900",
                "--hide-scrollbars",
                # No DNS for anything but this machine: the page must need nothing else.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = self._devtools_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0

    def _devtools_port(self):
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(path):
                with open(path) as file:
                    first = file.readline().strip()
                if first:
                    return int(first)
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, within_s, what):
        deadline = time.time() + within_s
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value not in (None, False):
                return value
            time.sleep(0.02)
        raise TimeoutError(f"{what} did not happen within {within_s} s")

    def close(self):
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def differences(shown, state):
    """How the page differs from the JSON, stage by stage."""
    found = []
    for page, json_ in zip(shown, state):
        for field in ("waiting", "called"):
            if page[field] != json_[field]:
                if field == "waiting":
                    extra = [t for t in page[field] if t not in json_[field]]
                    missing = [t for t in json_[field] if t not in page[field]]
                    what = f"extra {extra}, missing {missing}" if extra or missing else "order differs"
                else:
                    what = f"page {page[field]}, JSON {json_[field]}"
                found.append(f"{page['stage']} {field}: {what}")
    return found


def request(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(call, timeout=15) as answer:
        return json.loads(answer.read() or "null")


def register(patient, token):
    body = {"full_name": "board walkthrough", "id": patient, "sex": "female", "phone": 777777777}
    answer = request("POST", f"{REGISTRATION}/opd/patient/register", token, body)
    return {"token": answer["token"], "site": answer["site"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev-sh", required=True, help="scripts/dev.sh, to stop and start the board")
    parser.add_argument("--token-command", required=True, help="prints a bearer token for ROLE...")
    parser.add_argument("--screenshot", help="where to write a PNG of the board")
    args = parser.parse_args()

    def token_for(role):
        command = shlex.split(args.token_command) + [role]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    registrar, clinician = token_for("registrar"), token_for("clinician")
    # Ids no walkthrough uses, fresh on each run.
    first = 8_000_000 + int(time.time()) % 1_000_000 * 3
    results = []

    def check(title, ok, detail=""):
        results.append(ok)
        print(f"  {'ok  ' if ok else 'FAIL'}  {title}{': ' + detail if detail else ''}", flush=True)

    browser = Browser()
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{BOARD}/opd/board/screen")
        browser.wait_for("document.getElementById('board')?.dataset.connection === 'live'", 15,
                         "the page's event stream to open")
        browser.evaluate(WATCH)
        check("the page opens its event stream, with nothing from the internet", True)

        ticket = register(first, registrar)
        token = f"{ticket['site']}:{ticket['token']}"
        answered = time.time() * 1000
        seen = browser.wait_for(f"window.__seen['inspection:{token}']", 10,
                                f"token {token} in the inspection column")
        latency = seen - answered
        check(f"token {token} appears in the inspection column {latency:.0f} ms after the "
              f"registration's answer (limit {ON_SCREEN_WITHIN_MS} ms)", latency < ON_SCREEN_WITHIN_MS)

        request("POST", f"{INSPECTION}/opd/inspection/record", clinician, {
            "id": first, "time": "2021/07/12 10:21 AM", "observations": "board walkthrough",
            "medication": "XYZ x 3"})
        browser.wait_for(f"window.__seen['treatment:{token}']", 10, f"token {token} in treatment")
        shown = browser.evaluate(SHOWN)
        inspection = next(s for s in shown if s["stage"] == "inspection")
        check(f"after the inspection, token {token} waits for treatment and inspection calls it",
              ticket not in inspection["waiting"] and inspection["called"] == ticket,
              json.dumps(shown))

        subprocess.run([args.dev_sh, "stop", "board"], check=True, capture_output=True)
        browser.wait_for("document.getElementById('board').dataset.connection === 'lost'", 15,
                         "the page to notice the board is gone")
        second_ticket = register(first + 1, registrar)
        second = f"{second_ticket['site']}:{second_ticket['token']}"
        subprocess.run([args.dev_sh, "start", "board"], check=True, capture_output=True)
        browser.wait_for(f"window.__seen['inspection:{second}']", 30,
                         f"token {second}, registered while the board was down")
        check(f"after the board restarted, the page caught up by itself (token {second}), "
              f"without a reload", browser.evaluate("window.__notReloaded === true"))

        # Everything settled: the page and the JSON agree, each token once. (On a busy platform
        # the board may still be taking earlier events: both are read again until they agree.)
        deadline, shown, state = time.time() + 15, None, None
        while time.time() < deadline:
            with urllib.request.urlopen(f"{BOARD}/opd/board/state", timeout=10) as answer:
                state = [{"stage": s["stage"], "waiting": s["waiting"], "called": s["called"]}
                         for s in json.load(answer)["stages"]]
            shown = browser.evaluate(SHOWN)
            if shown == state:
                break
            time.sleep(0.2)
        tokens = [(t["site"], t["token"]) for s in shown for t in s["waiting"]]
        check("the page shows exactly what GET /opd/board/state says, each token once",
              shown == state and len(tokens) == len(set(tokens)),
              "" if shown == state else "; ".join(differences(shown, state)))

        if args.screenshot:
            shot = browser.call("Page.captureScreenshot", format="png")
            with open(args.screenshot, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
            print(f"  screenshot: {args.screenshot}")
        print(f"board-latency-ms: {latency:.0f}")
    except Exception as error:  # noqa: BLE001 - any failure is the walkthrough's verdict
        check("the walkthrough ran to its end", False, f"{type(error).__name__}: {error}")
    finally:
        browser.close()

    passed = sum(results)
    print(f"board: {passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
