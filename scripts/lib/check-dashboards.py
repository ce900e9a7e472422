"""Checks the Grafana provisioning in observability/grafana where Grafana itself cannot run.

What Grafana would need to show the dashboards, checked the way Grafana reads them:
- the datasource and dashboard provider files parse, and docker-compose.yml mounts the folder
  the provider reads (a wrong path makes Grafana load nothing, silently);
- each dashboard is a JSON object with a uid (unique), a title and a schema version, and its
  panels have unique ids, known types, grid positions inside the 24 columns without overlaps,
  a datasource that is provisioned and queries with unique refIds;
- with --prometheus URL, every panel query is run against that Prometheus and must return
  data: a query naming a metric or label that does not exist comes back empty.

Prints one "  ok"/"  FAIL" line per check; exits 1 if any failed.

    python3 check-dashboards.py ROOT [--prometheus http://127.0.0.1:9190]
"""

import argparse
import json
import pathlib
import sys
import urllib.parse
import urllib.request

import yaml

PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "state-timeline"}
GRID_COLUMNS = 24

failures = 0


def check(ok, title, why="", quiet=True):
    """Counts a check; a passed one is printed only when not quiet (the structure checks are
    many, and summed up in one line)."""
    global failures
    if ok:
        if not quiet:
            print(f"  ok    {title}")
    else:
        failures += 1
        print(f"  FAIL  {title}{': ' + why if why else ''}")


def grafana_mounts(root):
    """Container path -> host path of the grafana service's bind mounts."""
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    mounts = {}
    for volume in compose["services"]["grafana"].get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith("./"):
            mounts[parts[1]] = (root / parts[0]).resolve()
    return mounts


def provisioned(root):
    """The datasource uids and the host folders of the dashboard providers."""
    base = root / "observability/grafana/provisioning"
    uids = set()
    for path in sorted((base / "datasources").glob("*.yml")):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            check(bool(source.get("uid")) and bool(source.get("url")) and bool(source.get("type")),
                  f"datasource {source.get('name')} has a uid, a type and a url")
            uids.add(source.get("uid"))
    mounts = grafana_mounts(root)
    folders = []
    for path in sorted((base / "dashboards").glob("*.yml")):
        for provider in yaml.safe_load(path.read_text()).get("providers", []):
            inside = provider.get("options", {}).get("path", "")
            host = mounts.get(inside)
            check(host is not None and host.is_dir(),
                  f"dashboard provider {provider.get('name')} reads {inside}, mounted from the repo",
                  f"docker-compose.yml mounts {sorted(mounts)}")
            if host is not None:
                folders.append(host)
    return uids, folders


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check_dashboard(path, uids, seen_uids):
    """Checks one dashboard's structure; returns its (panel title, expr) pairs."""
    try:
        dashboard = json.loads(path.read_text())
    except ValueError as error:
        check(False, f"{path.name} is JSON", str(error))
        return []
    name = path.name
    uid = dashboard.get("uid")
    check(isinstance(uid, str) and uid and uid not in seen_uids, f"{name}: a uid of its own ({uid})")
    seen_uids.add(uid)
    check(isinstance(dashboard.get("title"), str) and dashboard["title"], f"{name}: a title")
    check(isinstance(dashboard.get("schemaVersion"), int), f"{name}: a schema version")
    panels = dashboard.get("panels", [])
    check(isinstance(panels, list) and panels, f"{name}: panels")
    ids = [panel.get("id") for panel in panels]
    check(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"{name}: unique panel ids")
    queries = []
    placed = []
    for panel in panels:
        title = panel.get("title", f"panel {panel.get('id')}")
        kind = panel.get("type")
        grid = panel.get("gridPos", {})
        inside = (all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h"))
                  and grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0
                  and grid["x"] + grid["w"] <= GRID_COLUMNS)
        clash = next((other for other, box in placed if inside and overlaps(grid, box)), None)
        check(kind in PANEL_TYPES and inside and clash is None,
              f"{name}: {title!r} is a {kind} placed inside the grid",
              f"overlaps {clash!r}" if clash else f"type {kind}, gridPos {grid}")
        if inside:
            placed.append((title, grid))
        if kind == "row":
            continue
        source = (panel.get("datasource") or {}).get("uid")
        targets = panel.get("targets", [])
        refs = [target.get("refId") for target in targets]
        good = (source in uids and targets and len(refs) == len(set(refs))
                and all(target.get("expr") for target in targets)
                and all((target.get("datasource") or {}).get("uid", source) in uids for target in targets))
        check(good, f"{name}: {title!r} queries a provisioned datasource",
              f"datasource {source}, provisioned {sorted(uids)}, refIds {refs}")
        queries += [(title, target.get("expr", "")) for target in targets]
    return queries


def query(prometheus, expr):
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except Exception as error:  # an HTTP 400 (a bad query) lands here too
        return None, str(error)
    return answer.get("data", {}).get("result"), answer.get("error", "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--prometheus")
    args = parser.parse_args()
    root = args.root.resolve()

    uids, folders = provisioned(root)
    seen = set()
    queries = []
    for folder in folders:
        dashboards = sorted(folder.glob("*.json"))
        check(bool(dashboards), f"dashboards in {folder.relative_to(root)}")
        for path in dashboards:
            queries += check_dashboard(path, uids, seen)
    if not failures:
        print(f"  ok    Grafana provisioning: {len(uids)} datasource(s), {len(seen)} dashboard(s)"
              f" with {len(queries)} queries, well formed")
    if args.prometheus:
        for title, expr in queries:
            result, why = query(args.prometheus, expr)
            check(bool(result), f"{title!r} has data: {expr}", why or "no series", quiet=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
