#!/usr/bin/env python3
"""What the documents name must exist, run by scripts/test.sh. The settings table and the
metric names are checked against the code by cargo tests (shared/src/infra/config_documented.rs,
the `documented` test of shared/src/infra/metrics.rs); this checks the rest that can drift
mechanically:

  - every alert in observability/prometheus/alerts.yml is in docs/observability.md's table and
    every alert there exists, with the same `for:` where the table gives a duration;
  - every link between documents (`[…](path)`) points at a file that exists, and every anchor
    (`#…`) at a heading of that file;
  - every repository path the documents write in backticks (`scripts/dev.sh`,
    `migrations/<service>/`, `deploy/kubernetes/base/…`) exists (placeholders such as
    `<service>` stand for any name);
  - every curl command of the README's first steps is one the tutorial runs (CI runs the
    tutorial's commands against a fresh platform and a busy one, and compares their output).

    check-docs.py ROOT
"""

import re
import sys
from pathlib import Path

import yaml

TOP = ("shared/", "services/", "scripts/", "nats/", "postgres/", "migrations/", "docs/",
       "deploy/", "observability/", "postman/", "e2e/", "testing/", "drills/", "nats-admin/",
       "nats-exporter/", "ci/", ".ci/", ".sqlx/")
# Made by the scripts, never committed.
GENERATED = ("deploy/kubernetes/secrets/generated/",)
UNITS = {"s": 1, "m": 60, "h": 3600}
WORDS = {"one": 1, "two": 2, "three": 3, "five": 5, "ten": 10}


def documents(root):
    return [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]


def anchor(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def alert_problems(root):
    rules = yaml.safe_load((root / "observability/prometheus/alerts.yml").read_text())
    alerts = {r["alert"]: r.get("for") for g in rules["groups"] for r in g["rules"] if "alert" in r}
    text = (root / "docs/observability.md").read_text()
    table = text[text.index("| Alert | Fires when |"):]
    table = table[:table.index("\n\n")]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    problems = [f"observability.md lists {name}, which alerts.yml does not have" for name in rows if name not in alerts]
    problems += [f"alerts.yml has {name}, which observability.md does not list" for name in alerts if name not in rows]
    for name, fires in rows.items():
        said = re.search(r"for (\d+|one|two|three|five|ten) (second|minute|hour)s?", fires)
        if said and name in alerts and alerts[name]:
            amount = int(said.group(1)) if said.group(1).isdigit() else WORDS[said.group(1)]
            seconds = amount * UNITS[said.group(2)[0]]
            rule = re.fullmatch(r"(\d+)([smh])", alerts[name])
            if not rule or int(rule.group(1)) * UNITS[rule.group(2)] != seconds:
                problems.append(f"observability.md: {name} fires '{fires}', alerts.yml says for: {alerts[name]}")
    return problems


def link_problems(root):
    problems = []
    for doc in documents(root):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, fragment = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                problems.append(f"{doc.relative_to(root)}: the link {target} points at nothing")
            elif fragment and file.suffix == ".md":
                headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                if fragment not in headings:
                    problems.append(f"{doc.relative_to(root)}: the link {target} has no such heading")
    return problems


def path_problems(root):
    problems = []
    for doc in documents(root):
        for quoted in re.findall(r"`([^`\s]+)`", doc.read_text()):
            path = quoted.rstrip(".,:;)")
            if not path.startswith(TOP) or "://" in path or path.startswith(GENERATED):
                continue
            path = re.sub(r"[?#].*$", "", path)
            # `<service>`, `<name>`, `*` and `…` stand for any name.
            pattern = re.sub(r"<[^>]+>|…", "*", path)
            if not list(root.glob(pattern.rstrip("/"))):
                problems.append(f"{doc.relative_to(root)}: `{quoted}` does not exist")
    return problems


def readme_curl_problems(root):
    readme = (root / "README.md").read_text()
    tutorial = {line.strip() for line in (root / "docs/tutorial.md").read_text().splitlines()}
    commands = [line.strip() for block in re.findall(r"^```sh\n(.*?)^```", readme, re.M | re.S)
                for line in block.splitlines() if line.startswith("curl ")]
    problems = [f"README.md: `{c}` is not a command of docs/tutorial.md" for c in commands
                if c not in tutorial]
    if not commands:
        problems.append("README.md shows no curl command (this check reads ```sh blocks)")
    return problems


def main():
    root = Path(sys.argv[1]).resolve()
    passed = failed = 0
    for name, check in (("alerts", alert_problems), ("links", link_problems),
                        ("paths", path_problems), ("readme-curl", readme_curl_problems)):
        problems = check(root)
        if problems:
            failed += 1
            print(f"docs: {name}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            passed += 1
    print(f"docs: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
