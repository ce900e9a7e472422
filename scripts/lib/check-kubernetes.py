#!/usr/bin/env python3
"""The offline proof of deploy/kubernetes, run by scripts/check-kubernetes.sh: no cluster is
needed, so every manifest is checked the way it can be without one.

For each overlay (dev, production) it
  1. renders it with `kubectl kustomize`;
  2. validates every built-in object against the Kubernetes schemas of one pinned version
     (kubernetes-validate, strict: an unknown field is an error), and CloudNativePG's `Cluster`
     objects against a structural schema of the fields the platform uses (written from the
     operator's API reference: its own CRD cannot be fetched here);
  3. runs the NATS nodes' configuration as the StatefulSet hands it to them (the ConfigMap's
     files, the environment, the mounted Secrets) through `nats-server -t`;
  4. checks the cross-references no schema can see: selectors that match pod templates, Secret
     and ConfigMap keys that exist, files the settings name that are mounted, probe and Service
     ports that the containers listen on, the services' database and NATS addresses, images and
     their tags, grace periods, security contexts, and that the NATS configuration is the one in
     nats/.

Then it breaks a rendered copy on purpose (a selector, a Secret key, a probe port, a field, the
NATS configuration, …) and requires each check to catch its break: a check that cannot fail
counts as failed.

    check-kubernetes.py ROOT DEPLOY
        ROOT    the repository (nats/, Cargo.toml, docker-compose.yml: what must agree)
        DEPLOY  the deploy/kubernetes folder to render, with secrets/generated/ filled in
        (NATS_SERVER_BIN names the nats-server to test with)
"""

import base64
import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ("dev", "production")
SERVICES = {"registration": 9090, "inspection": 9091, "treatment": 9092, "release": 9093, "board": 9094}
# The settings every service needs from its environment on Kubernetes.
REQUIRED_SETTINGS = ("OPD_HTTP__PORT", "OPD_HTTP__SHUTDOWN_GRACE", "OPD_DATABASE__URL",
                     "OPD_DATABASE__PASSWORD_FILE", "OPD_NATS__SERVERS",
                     "OPD_NATS__NKEY_SEED_FILE", "OPD_NATS__TLS__CA_FILE")
# What CloudNativePG creates for a Cluster named N, which the manifests may refer to: the
# application role's Secret N-app with these keys, and the pods' labels.
CNPG_APP_SECRET_KEYS = {"username", "user", "password", "host", "port", "dbname", "uri",
                        "jdbc-uri", "pgpass"}

QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
RESOURCES = {
    "type": "object", "additionalProperties": False,
    "properties": {
        key: {"type": "object", "additionalProperties": False,
              "properties": {"cpu": {"type": "string", "pattern": QUANTITY},
                             "memory": {"type": "string", "pattern": QUANTITY}}}
        for key in ("requests", "limits")
    },
}
# The fields of postgresql.cnpg.io/v1 Cluster that the platform sets, as the CloudNativePG API
# reference describes them. A field outside this list is refused, so a misspelt one (which the
# operator would reject or, worse, ignore) fails here; a new field is added here knowingly.
CNPG_CLUSTER_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Cluster"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object", "additionalProperties": False,
            "required": ["instances", "imageName", "bootstrap", "storage"],
            "properties": {
                "instances": {"type": "integer", "minimum": 1},
                "imageName": {"type": "string", "pattern": r"^[^:]+:[0-9][^:]*$"},
                "enableSuperuserAccess": {"type": "boolean"},
                "bootstrap": {
                    "type": "object", "additionalProperties": False, "required": ["initdb"],
                    "properties": {"initdb": {
                        "type": "object", "additionalProperties": False,
                        "required": ["database", "owner"],
                        "properties": {"database": {"type": "string"},
                                       "owner": {"type": "string"}}}},
                },
                "postgresql": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "parameters": {"type": "object",
                                       "additionalProperties": {"type": "string"}},
                        "synchronous": {
                            "type": "object", "additionalProperties": False,
                            "required": ["method", "number"],
                            "properties": {"method": {"enum": ["any", "first"]},
                                           "number": {"type": "integer", "minimum": 1}}},
                    },
                },
                "storage": {
                    "type": "object", "additionalProperties": False, "required": ["size"],
                    "properties": {"size": {"type": "string", "pattern": QUANTITY},
                                   "storageClass": {"type": "string"}}},
                "resources": RESOURCES,
            },
        },
    },
}
CUSTOM_SCHEMAS = {("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER_SCHEMA}


def render(deploy, overlay):
    result = subprocess.run(["kubectl", "kustomize", str(deploy / "overlays" / overlay)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- 2. schemas --------------------------------------------------------------------------------

def schema_errors(docs):
    errors = []
    for doc in docs:
        custom = CUSTOM_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        try:
            if custom:
                jsonschema.validate(doc, custom)
                errors += cnpg_rules(doc)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            where = "/".join(str(p) for p in getattr(error, "absolute_path", []))
            errors.append(f"{name_of(doc)}: {where}: {getattr(error, 'message', error)}")
    return errors


def cnpg_rules(cluster):
    """What the structural schema cannot say about a Cluster."""
    spec, errors = cluster["spec"], []
    synchronous = spec.get("postgresql", {}).get("synchronous")
    if synchronous and synchronous["number"] >= spec["instances"]:
        errors.append(f"{name_of(cluster)}: {synchronous['number']} synchronous standbys need more "
                      f"than {spec['instances']} instances")
    return errors


# --- 3. the NATS configuration, through nats-server -t ----------------------------------------

def secret_files(docs):
    """Secret and ConfigMap contents by (kind, name): {key: bytes}."""
    contents = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            contents[("Secret", doc["metadata"]["name"])] = {
                key: base64.b64decode("".join(value.split()))
                for key, value in doc.get("data", {}).items()}
        elif doc["kind"] == "ConfigMap":
            contents[("ConfigMap", doc["metadata"]["name"])] = {
                key: value.encode() for key, value in doc.get("data", {}).items()}
    return contents


def nats_config_errors(docs, nats_server):
    """Runs `nats-server -t` on the first node's configuration, laid out as its pod sees it,
    under a temporary root: every mounted ConfigMap and Secret file at its mount path, and
    every path in the environment and the arguments moved under that root."""
    errors = []
    contents = secret_files(docs)
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                for mount in container.get("volumeMounts", []):
                    target = root / mount["mountPath"].lstrip("/")
                    target.mkdir(parents=True, exist_ok=True)
                    for file, data in volume_files(volumes.get(mount["name"], {}), contents).items():
                        (target / file).write_bytes(data)
                env = {"PATH": os.environ.get("PATH", "")}
                for source in container.get("envFrom", []):
                    ref = source.get("secretRef") or source.get("configMapRef")
                    kind = "Secret" if "secretRef" in source else "ConfigMap"
                    for key, value in contents.get((kind, ref["name"]), {}).items():
                        env[key] = value.decode().strip()
                for var in container.get("env", []):
                    env[var["name"]] = env_value(var, sts, contents)
                for key, value in env.items():
                    if value.startswith("/") and key != "PATH":
                        env[key] = str(root / value.lstrip("/"))
                args = [str(root / a.lstrip("/")) if a.startswith("/") else a
                        for a in container.get("args", [])]
                result = subprocess.run([nats_server, "-t", *args], env=env,
                                        capture_output=True, text=True, cwd=root)
                if result.returncode != 0:
                    output = (result.stdout + result.stderr).strip().replace(tmp, "")
                    errors.append(f"{name_of(sts)}: nats-server -t refused its configuration: {output}")
    return errors


def volume_files(volume, contents):
    """The files a Secret or ConfigMap volume holds: {path: bytes}."""
    if "secret" in volume:
        kind, source = "Secret", volume["secret"]
        name = source["secretName"]
    elif "configMap" in volume:
        kind, source = "ConfigMap", volume["configMap"]
        name = source["name"]
    else:
        return {}
    data = contents.get((kind, name), {})
    if "items" in source:
        return {item["path"]: data[item["key"]] for item in source["items"] if item["key"] in data}
    return dict(data)


def env_value(var, owner, contents):
    if "value" in var:
        return str(var["value"])
    source = var.get("valueFrom", {})
    if "fieldRef" in source and source["fieldRef"]["fieldPath"] == "metadata.name":
        return f"{owner['metadata']['name']}-0"
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in source:
            return contents.get((kind, source[key]["name"]), {}).get(source[key]["key"], b"").decode()
    return ""


# --- 4. cross-references ------------------------------------------------------------------------

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Platform:
    """The rendered objects, indexed for the checks."""

    def __init__(self, docs):
        self.docs = docs
        self.by_kind = {}
        for doc in docs:
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
        self.workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
        self.clusters = self.by_kind.get("Cluster", {})
        self.contents = secret_files(docs)
        # The pods that will exist, by their labels: the workloads' templates, and the
        # instances CloudNativePG starts for each Cluster.
        self.pods = [(name_of(w), w["spec"]["template"]["metadata"].get("labels", {}),
                      w["spec"]["template"]["spec"]) for w in self.workloads]
        self.pods += [(f"Cluster/{name} instance", {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"},
                       {"containers": [{"name": "postgres", "ports": [
                           {"name": "postgresql", "containerPort": 5432},
                           {"name": "status", "containerPort": 8000}]}]})
                      for name in self.clusters]

    def pods_matching(self, selector):
        return [pod for pod in self.pods if matches(selector, pod[1])]

    def keys(self, kind, name):
        if kind == "Secret" and name.endswith("-app") and name[:-4] in self.clusters:
            return CNPG_APP_SECRET_KEYS
        data = self.contents.get((kind, name))
        return None if data is None else set(data)


def crossref_errors(docs, root):
    platform, errors = Platform(docs), []
    for check in (selectors, references, files_and_ports, service_settings, images,
                  nats_configuration, every_service_complete, policies_least_privilege):
        errors += check(platform, root)
    return errors


def selectors(platform, _root):
    errors = []
    for w in platform.workloads:
        selector = w["spec"].get("selector", {})
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        if selector and not matches(selector.get("matchLabels", {}), labels):
            errors.append(f"{name_of(w)}: selector {selector} does not match its pod template {labels}")
    for svc in platform.by_kind.get("Service", {}).values():
        selected = platform.pods_matching(svc["spec"].get("selector", {}))
        if not selected:
            errors.append(f"{name_of(svc)}: selector {svc['spec'].get('selector')} matches no pod template")
        for port in svc["spec"]["ports"]:
            for pod_name, _, pod in selected:
                if not container_port(pod, port.get("targetPort", port["port"])):
                    errors.append(f"{name_of(svc)}: targetPort {port.get('targetPort')} is no port of {pod_name}")
    for pdb in platform.by_kind.get("PodDisruptionBudget", {}).values():
        if not platform.pods_matching(pdb["spec"]["selector"].get("matchLabels", {})):
            errors.append(f"{name_of(pdb)}: selector matches no pod template")
    for policy in platform.by_kind.get("NetworkPolicy", {}).values():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        targets = platform.pods_matching(selector) if selector else platform.pods
        if selector and not targets:
            errors.append(f"{name_of(policy)}: podSelector {selector} matches no pod")
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                peers = []
                for peer in rule.get(peers_key, []):
                    if "namespaceSelector" in peer:
                        continue  # another namespace's pods: not in this rendering
                    peer_selector = peer.get("podSelector", {}).get("matchLabels", {})
                    found = platform.pods_matching(peer_selector)
                    if not found:
                        errors.append(f"{name_of(policy)}: {direction} peer {peer_selector} matches no pod")
                    peers += found
                # A named port is looked up on the pods it applies to: the policy's own pods
                # for ingress, the peers for egress.
                owners = targets if direction == "ingress" else peers
                for port in rule.get("ports", []):
                    if isinstance(port.get("port"), str) and owners and not any(
                            container_port(pod, port["port"]) for _, _, pod in owners):
                        errors.append(f"{name_of(policy)}: {direction} port {port['port']!r} is "
                                      f"no port of the pods it applies to")
    return errors


def container_port(pod, port):
    """The container port `port` (a name or a number) of the pod, or None."""
    for container in pod["containers"]:
        for p in container.get("ports", []):
            if port in (p.get("name"), p["containerPort"]):
                return p["containerPort"]
    return None


def pod_specs(platform):
    for w in platform.workloads:
        yield w, w["spec"]["template"]["spec"]


def references(platform, _root):
    """Every Secret and ConfigMap a pod uses exists, with every key it names."""
    errors = []

    def need(owner, kind, name, key=None):
        keys = platform.keys(kind, name)
        if keys is None:
            errors.append(f"{name_of(owner)}: {kind} {name} does not exist")
        elif key is not None and key not in keys:
            errors.append(f"{name_of(owner)}: {kind} {name} has no key {key!r}")

    for owner, pod in pod_specs(platform):
        for volume in pod.get("volumes", []):
            for kind, field, name_field in (("Secret", "secret", "secretName"),
                                            ("ConfigMap", "configMap", "name")):
                if field in volume:
                    source = volume[field]
                    need(owner, kind, source[name_field])
                    for item in source.get("items", []):
                        need(owner, kind, source[name_field], item["key"])
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    need(owner, "Secret", source["secretRef"]["name"])
                if "configMapRef" in source:
                    need(owner, "ConfigMap", source["configMapRef"]["name"])
            for var in container.get("env", []):
                source = var.get("valueFrom", {})
                if "secretKeyRef" in source:
                    need(owner, "Secret", source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])
                if "configMapKeyRef" in source:
                    need(owner, "ConfigMap", source["configMapKeyRef"]["name"], source["configMapKeyRef"]["key"])
    return errors


def mounted_file(platform, pod, container, path):
    """None if `path` is a file the container has; otherwise why not."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = volumes.get(mount["name"], {})
            if "secret" not in volume and "configMap" not in volume:
                return None  # a volume written at run time (the JetStream store)
            files = set(volume_files(volume, platform.contents))
            source = volume.get("secret", volume.get("configMap", {}))
            if "secret" in volume and source.get("secretName", "").endswith("-app") \
                    and source["secretName"][:-4] in platform.clusters:
                files = {item["path"] for item in source.get("items", [])}
            relative = path[len(prefix):]
            return None if relative in files else f"{path}: {relative} is not in volume {mount['name']} ({sorted(files)})"
    return f"{path} is on no mounted volume"


def files_and_ports(platform, _root):
    """Every file a setting or an argument names is mounted; every probe's port is one the
    container listens on; what the processes are told to listen on is what the pod declares."""
    errors = []
    for owner, pod in pod_specs(platform):
        for container in pod["containers"]:
            env = {v["name"]: v.get("value") for v in container.get("env", [])}
            paths = [(k, v) for k, v in env.items() if isinstance(v, str) and v.startswith("/")
                     and (k.endswith("_FILE") or re.fullmatch(r"NATS_(ROUTE_)?TLS_(CERT|KEY|CA)", k))]
            paths += [("args", a) for a in container.get("args", []) if a.startswith("/")]
            for setting, path in paths:
                problem = mounted_file(platform, pod, container, path)
                if problem:
                    errors.append(f"{name_of(owner)}: {setting}: {problem}")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and container_port({"containers": [container]}, port) is None:
                    errors.append(f"{name_of(owner)}: {probe} port {port!r} is no port of {container['name']}")
            # The processes listen where their settings say: the declared ports must be those.
            for setting, port_name in (("OPD_HTTP__PORT", "http"), ("NATS_CLIENT_PORT", "client"),
                                       ("NATS_CLUSTER_PORT", "cluster"), ("NATS_MONITOR_PORT", "monitor"),
                                       ("NATS_LEAF_PORT", "leaf")):
                if setting in env:
                    declared = container_port({"containers": [container]}, port_name)
                    if str(declared) != str(env[setting]):
                        errors.append(f"{name_of(owner)}: {setting}={env[setting]} but port "
                                      f"{port_name!r} is {declared}")
            security = container.get("securityContext", {})
            if not (security.get("readOnlyRootFilesystem") and security.get("allowPrivilegeEscalation") is False
                    and security.get("capabilities", {}).get("drop") == ["ALL"]):
                errors.append(f"{name_of(owner)}: {container['name']} must run read-only, without "
                              f"privilege escalation and capabilities")
            if not (pod.get("securityContext", {}).get("runAsNonRoot") or security.get("runAsNonRoot")):
                errors.append(f"{name_of(owner)}: {container['name']} must run as non-root")
            resources = container.get("resources", {})
            if not (resources.get("requests") and resources.get("limits", {}).get("memory")):
                errors.append(f"{name_of(owner)}: {container['name']} needs requests and a memory limit")
    return errors


def seconds(text):
    match = re.fullmatch(r"([0-9]+)(s|m)", text)
    if not match:
        raise ValueError(f"cannot read the duration {text!r}")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def service_settings(platform, _root):
    """What each service is told: its port, its own database through the operator's names, the
    NATS nodes by names that exist, a grace period the kubelet waits for."""
    errors = []
    headless = {n: s for n, s in platform.by_kind.get("Service", {}).items() if s["spec"].get("clusterIP") == "None"}
    statefulsets = platform.by_kind.get("StatefulSet", {})

    def nats_addresses(owner, value, port_name):
        for url in value.split(","):
            match = re.fullmatch(r"nats://([a-z0-9-]+)-([0-9]+)\.([a-z0-9-]+):([0-9]+)", url.strip())
            sts = statefulsets.get(match.group(1)) if match else None
            if not sts:
                errors.append(f"{name_of(owner)}: {url} is no pod of a NATS StatefulSet")
                continue
            if sts["spec"]["serviceName"] != match.group(3) or match.group(3) not in headless:
                errors.append(f"{name_of(owner)}: {url}: {match.group(3)} is not {match.group(1)}'s headless Service")
            if int(match.group(2)) >= sts["spec"]["replicas"]:
                errors.append(f"{name_of(owner)}: {url}: {match.group(1)} has {sts['spec']['replicas']} pods")
            if container_port(sts["spec"]["template"]["spec"], port_name) != int(match.group(4)):
                errors.append(f"{name_of(owner)}: {url}: the nodes' {port_name} port is not {match.group(4)}")

    for owner, pod in pod_specs(platform):
        for container in pod["containers"]:
            env = {v["name"]: v.get("value") for v in container.get("env", [])}
            if "OPD_NATS__SERVERS" in env:
                nats_addresses(owner, env["OPD_NATS__SERVERS"], "client")
            for key in (k for k in env if re.fullmatch(r"NATS_ROUTE_[0-9]+", k)):
                nats_addresses(owner, env[key], "cluster")
    for name, port in SERVICES.items():
        deployment = platform.by_kind.get("Deployment", {}).get(name)
        if not deployment:
            continue  # every_service_complete says so
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        for setting in REQUIRED_SETTINGS:
            if setting not in env:
                errors.append(f"{name_of(deployment)}: {setting} is not set")
        if container.get("args") != [name]:
            errors.append(f"{name_of(deployment)}: the image runs {container.get('args')}, not [{name!r}]")
        if env.get("OPD_HTTP__PORT") != str(port):
            errors.append(f"{name_of(deployment)}: OPD_HTTP__PORT is {env.get('OPD_HTTP__PORT')}, the book's port is {port}")
        grace = seconds(env.get("OPD_HTTP__SHUTDOWN_GRACE", "0s"))
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if pod.get("terminationGracePeriodSeconds", 30) <= grace + pause:
            errors.append(f"{name_of(deployment)}: terminationGracePeriodSeconds "
                          f"{pod.get('terminationGracePeriodSeconds', 30)} must exceed the shutdown "
                          f"grace ({grace} s) plus the preStop pause ({pause} s)")
        url = re.fullmatch(r"postgres://([a-z_]+)@([a-z0-9-]+)-rw:5432/([a-z_]+)", env.get("OPD_DATABASE__URL") or "")
        cluster = platform.clusters.get(url.group(2)) if url else None
        if not cluster:
            errors.append(f"{name_of(deployment)}: OPD_DATABASE__URL {env.get('OPD_DATABASE__URL')} "
                          f"is not the read-write Service of a CloudNativePG Cluster")
            continue
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        if (url.group(1), url.group(3)) != (initdb["owner"], initdb["database"]):
            errors.append(f"{name_of(deployment)}: connects as {url.group(1)} to {url.group(3)}, but "
                          f"Cluster/{url.group(2)} makes {initdb['owner']} own {initdb['database']}")
        if not any(v.get("secret", {}).get("secretName") == f"{url.group(2)}-app"
                   for v in pod.get("volumes", [])):
            errors.append(f"{name_of(deployment)}: the password of {url.group(2)} is not mounted")
    return errors


def images(platform, root):
    """One tag for the platform's image (the workspace's version) and the pinned NATS server,
    the same as docker-compose.yml runs."""
    errors = []
    version = re.search(r'^version = "([^"]+)"', (root / "Cargo.toml").read_text(), re.M).group(1)
    nats_version = re.search(r'^NATS_SERVER_VERSION="([^"]+)"', (root / "scripts/lib/common.sh").read_text(), re.M).group(1)
    compose = (root / "docker-compose.yml").read_text()
    expected = {"opd-platform": version, "nats": f"{nats_version}-alpine"}
    for image, tag in expected.items():
        if f"image: {image}:{tag}" not in compose:
            errors.append(f"docker-compose.yml does not run {image}:{tag}")
    for owner, pod in pod_specs(platform):
        for container in pod["containers"]:
            image, _, tag = container["image"].rpartition(":")
            if not image or tag == "latest":
                errors.append(f"{name_of(owner)}: image {container['image']} has no pinned tag")
            elif image in expected and tag != expected[image]:
                errors.append(f"{name_of(owner)}: image {container['image']}, expected {image}:{expected[image]}")
    return errors


def nats_configuration(platform, root):
    """The nodes run nats/'s own files, unchanged."""
    errors = []
    configs = [d for d in platform.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("opd-nats-config")]
    if len(configs) != 1:
        return [f"expected one opd-nats-config ConfigMap, found {len(configs)}"]
    for file, text in configs[0]["data"].items():
        original = root / "nats" / file
        if not original.exists() or original.read_text() != text:
            errors.append(f"ConfigMap opd-nats-config: {file} differs from nats/{file} (copy it again: "
                          f"cp nats/{file} deploy/kubernetes/base/nats/config/)")
    return errors


def every_service_complete(platform, _root):
    errors = []
    for name in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
            if name not in platform.by_kind.get(kind, {}):
                errors.append(f"{name} has no {kind}")
        policy = platform.by_kind.get("NetworkPolicy", {}).get(name)
        if policy:
            reached = [p.get("podSelector", {}).get("matchLabels", {}) for rule in policy["spec"].get("egress", [])
                       for p in rule.get("to", [])]
            if {"cnpg.io/cluster": f"{name}-db"} not in reached or {"app.kubernetes.io/name": "nats"} not in reached:
                errors.append(f"NetworkPolicy/{name}: must let {name} reach its database and NATS")
            if len(reached) != 2:
                errors.append(f"NetworkPolicy/{name}: {name} may reach only its database and NATS, not {reached}")
    return errors


def peers(rule, key):
    """A rule's peers as (namespace selector, pod selector) pairs of label dicts."""
    return [(p.get("namespaceSelector", {}).get("matchLabels"), p.get("podSelector", {}).get("matchLabels"))
            for p in rule.get(key, [])]


def policies_least_privilege(platform, _root):
    """The NATS nodes, the databases and the set-up Job are reached by, and reach, no more than
    they need: the policies are written out here as what they must say, so that a widened one
    (a new peer, an open rule) fails."""
    policies = platform.by_kind.get("NetworkPolicy", {})
    nats = {"app.kubernetes.io/name": "nats"}
    errors = []

    def expect(name, direction, wanted):
        policy = policies.get(name)
        if not policy:
            errors.append(f"NetworkPolicy/{name} is missing")
            return
        key = "from" if direction == "ingress" else "to"
        rules = [(sorted(str(p) for p in peers(rule, key)),
                  sorted(str(port.get("port")) for port in rule.get("ports", [])))
                 for rule in policy["spec"].get(direction, [])]
        wanted = [(sorted(str(p) for p in pairs), sorted(str(port) for port in ports)) for pairs, ports in wanted]
        if sorted(rules) != sorted(wanted):
            errors.append(f"NetworkPolicy/{name}: {direction} is {rules}, least privilege is {wanted}")

    expect("nats", "ingress", [
        ([(None, {"opd.hospital/nats-client": "true"})], ["client"]),
        ([(None, nats)], ["cluster"]),
        ([({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"})], ["monitor"]),
    ])
    expect("nats", "egress", [([(None, nats)], [6222])])
    expect("nats-setup", "egress", [([(None, nats)], [4222])])
    for service in SERVICES:
        database = {"cnpg.io/cluster": f"{service}-db"}
        expect(f"{service}-db", "ingress", [
            ([(None, {"app.kubernetes.io/name": service}), (None, database)], [5432]),
            ([({"kubernetes.io/metadata.name": "cnpg-system"}, None)], [5432, 8000]),
        ])
        expect(f"{service}-db", "egress", [([(None, database)], [5432, 8000]), ([], [443, 6443])])
    # Only the services and the set-up Job may open NATS connections.
    for pod_name, labels, _ in platform.pods:
        if labels.get("opd.hospital/nats-client") == "true" and not (
                labels.get("app.kubernetes.io/component") == "service"
                or labels.get("app.kubernetes.io/name") == "nats-setup"):
            errors.append(f"{pod_name} is labelled a NATS client but is neither a service nor the set-up Job")
    return errors


def helm_values(root, docs):
    errors = helm_values_errors(root, docs)
    return not errors, "nats-values.yaml describes the base's NATS cluster", errors


def helm_values_errors(root, docs):
    """The Helm chart's values describe the same cluster as the rendered StatefulSet (the
    base's: the production overlay enlarges its volumes)."""
    values = yaml.safe_load((root / "deploy/kubernetes/nats-values.yaml").read_text())
    platform = Platform(docs)
    sts = platform.by_kind["StatefulSet"]["opd-nats"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    errors = []
    pairs = [
        ("config.cluster.replicas", values["config"]["cluster"]["replicas"], sts["spec"]["replicas"]),
        ("container.image.tag", values["container"]["image"]["tag"], container["image"].rpartition(":")[2]),
        ("config.nats.port", values["config"]["nats"]["port"], container_port(sts["spec"]["template"]["spec"], "client")),
        ("config.cluster.port", values["config"]["cluster"]["port"], container_port(sts["spec"]["template"]["spec"], "cluster")),
        ("config.monitor.port", values["config"]["monitor"]["port"], container_port(sts["spec"]["template"]["spec"], "monitor")),
        ("config.jetstream.fileStore.pvc.size", values["config"]["jetstream"]["fileStore"]["pvc"]["size"],
         sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]),
    ]
    for key, value, rendered in pairs:
        if value != rendered:
            errors.append(f"nats-values.yaml: {key} is {value}, the rendered StatefulSet has {rendered}")
    if values["config"]["merge"].get("$include") != "../nats-auth/auth.conf":
        errors.append("nats-values.yaml: config.merge must include the platform's auth.conf")
    return errors


# --- the checks, and the breaks each must catch --------------------------------------------------

def all_checks(docs, root, nats_server):
    return {
        "schemas": schema_errors(docs),
        "nats-server -t": nats_config_errors(docs, nats_server),
        "cross-references": crossref_errors(docs, root),
    }


def find(docs, kind, name):
    """The object of that kind named `name`, or `name` with kustomize's hash suffix."""
    return next(d for d in docs if d["kind"] == kind
                and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", d["metadata"]["name"]))


def break_selector(docs):
    find(docs, "Service", "inspection")["spec"]["selector"]["app.kubernetes.io/name"] = "inspecton"
    return "cross-references", "matches no pod template"


def break_secret_key(docs):
    del find(docs, "Secret", "opd-nats-inspection")["data"]["seed.nk"]
    return "cross-references", "seed.nk is not in volume"


def break_secret_name(docs):
    find(docs, "Deployment", "treatment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] = "treatment-db-ap"
    return "cross-references", "Secret treatment-db-ap does not exist"


def break_probe_port(docs):
    container = find(docs, "Deployment", "registration")["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["port"] = 9999
    return "cross-references", "readinessProbe port 9999"


def break_listen_port(docs):
    container = find(docs, "Deployment", "release")["spec"]["template"]["spec"]["containers"][0]
    next(v for v in container["env"] if v["name"] == "OPD_HTTP__PORT")["value"] = "8080"
    return "cross-references", "OPD_HTTP__PORT=8080"


def break_database(docs):
    container = find(docs, "Deployment", "inspection")["spec"]["template"]["spec"]["containers"][0]
    next(v for v in container["env"] if v["name"] == "OPD_DATABASE__URL")["value"] = \
        "postgres://opd_inspection@registration-db-rw:5432/opd_inspection"
    return "cross-references", "makes opd_registration own"


def break_nats_address(docs):
    container = find(docs, "Deployment", "registration")["spec"]["template"]["spec"]["containers"][0]
    next(v for v in container["env"] if v["name"] == "OPD_NATS__SERVERS")["value"] = \
        "nats://opd-nats-3.opd-nats-headless:4222"
    return "cross-references", "has 3 pods"


def break_grace(docs):
    find(docs, "Deployment", "treatment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20
    return "cross-references", "must exceed the shutdown grace"


def break_field(docs):
    find(docs, "Deployment", "registration")["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    return "schemas", "readinesProbe"


def break_cnpg_field(docs):
    find(docs, "Cluster", "release-db")["spec"]["instance"] = 3
    return "schemas", "instance"


def break_nats_config(docs):
    config = find(docs, "ConfigMap", "opd-nats-config")["data"]
    config["auth.conf"] = config["auth.conf"].replace("$NATS_NKEY_ADMIN", "$NATS_NKEY_ADMINISTRATOR")
    return "nats-server -t", "NATS_NKEY_ADMINISTRATOR"


def break_nats_copy(docs):
    config = find(docs, "ConfigMap", "opd-nats-config")["data"]
    config["auth.conf"] = config["auth.conf"].replace('"patient.register"', '"patient.>"', 1)
    return "cross-references", "auth.conf differs from nats/auth.conf"


def break_policy(docs):
    policy = find(docs, "NetworkPolicy", "treatment")
    policy["spec"]["egress"].append({"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "registration-db"}}}]})
    return "cross-references", "may reach only its database and NATS"


def break_database_policy(docs):
    policy = find(docs, "NetworkPolicy", "inspection-db")
    policy["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "release"}}})
    return "cross-references", "NetworkPolicy/inspection-db: ingress is"


def break_nats_policy(docs):
    policy = find(docs, "NetworkPolicy", "nats")
    # The databases' pods may open NATS connections: a peer that exists, so that only the
    # least-privilege check can object.
    policy["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"cnpg.io/cluster": "release-db"}}})
    return "cross-references", "NetworkPolicy/nats: ingress is"


BREAKS = [break_database_policy, break_nats_policy, break_selector, break_secret_key, break_secret_name, break_probe_port, break_listen_port,
          break_database, break_nats_address, break_grace, break_field, break_cnpg_field,
          break_nats_config, break_nats_copy, break_policy]


def main():
    root, deploy = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    nats_server = os.environ["NATS_SERVER_BIN"]
    passed = failed = 0

    def outcome(ok, what, details=()):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        for line in details:
            print(f"       {line}")

    rendered = {}
    for overlay in OVERLAYS:
        docs = render(deploy, overlay)
        rendered[overlay] = docs
        print(f"{overlay}: {len(docs)} objects rendered")
        for check, errors in all_checks(docs, root, nats_server).items():
            outcome(not errors, f"{overlay}: {check}", errors)
        if overlay == "dev":
            outcome(*helm_values(root, docs))

    for breaker in BREAKS:
        docs = copy.deepcopy(rendered["dev"])
        check, expected = breaker(docs)
        found = all_checks(docs, root, nats_server)[check]
        caught = [e for e in found if expected in e]
        outcome(bool(caught), f"broken on purpose ({breaker.__name__[6:]}): {check} catches it",
                caught[:1] or [f"expected an error containing {expected!r}, got {found or 'none'}"])

    print(f"kubernetes: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
