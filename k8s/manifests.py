"""The static half of k8s/check: the constants, the list of problems found, and the
checks of rendered manifests (kubernetes-validate, the server's variables, selectors,
secrets, replicated overlays, NATS configuration, the Dockerfile). Nothing here starts
a process but kustomize and kubernetes-validate.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
SERVER = os.environ["COURIER_SERVER_BIN"]
# Built by k8s/check (scripts/lib.sh go_tool, pinned there as NATS_MODULE).
NATS_SERVER = shutil.which("nats-server") or "nats-server"
# The oldest Kubernetes the manifests use features of (preStop `sleep`, beta and on by
# default from 1.30) and the newest kubernetes-validate knows.
VERSIONS = ["1.30.0", "1.37.0"]
# What the server takes, after --shutdown-grace, to clean up aborted uploads
# (service/server.rs, ABORT_WAIT).
ABORT_WAIT_SECONDS = 5
# Secrets the operator creates (README, "Deploying on Kubernetes"); any other Secret a
# pod reads must be in the overlay.
OPERATOR_SECRETS = {"courier-jwt"}
# The nats-server configuration an overlay with a bus but no NATS of its own (aws: the
# operator runs NATS) is started with here: the recommended one, of overlays/local.
RECOMMENDED_NATS_CONF = K8S / "overlays" / "local" / "nats.conf"

problems: list[str] = []


def problem(where: str, text: str) -> None:
    problems.append(f"{where}: {text}")
    print(f"FAIL {where}: {text}", file=sys.stderr)


def render(path: Path) -> list[dict]:
    out = subprocess.run(["kustomize", "build", str(path)], check=True, capture_output=True, text=True, timeout=120)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(name: str, docs: list[dict], workdir: Path, versions: list[str] = VERSIONS) -> None:
    """kubernetes-validate --strict on every resource it has a schema for."""
    known = [d for d in docs if d["kind"] != "ServiceMonitor"]
    file = workdir / f"{name.replace('/', '-')}.yaml"
    file.write_text(yaml.safe_dump_all(known))
    for version in versions:
        run = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", version, str(file)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if run.returncode != 0:
            problem(name, f"kubernetes-validate {version}:\n{run.stdout}{run.stderr}")
    print(f"{name}: {len(known)} resources valid against Kubernetes {', '.join(versions)} (strict)")


def server_env_vars() -> set[str]:
    help_text = subprocess.run([SERVER, "serve", "--help"], check=True, capture_output=True, text=True, timeout=30).stdout
    names = set(re.findall(r"\[env: (COURIER_[A-Z0-9_]+)", help_text))
    if len(names) < 10:
        problem("courier-server serve --help", f"found only {sorted(names)}")
    return names


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_overlay(name: str, docs: list[dict], known_vars: set[str], monitor: dict) -> dict[str, str]:
    """Static checks of one rendered overlay; returns the container's COURIER_* env."""
    deployment = one(docs, "Deployment", "courier")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "courier"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = one(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(config["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from a Secret>")
    for var in env:
        if var.startswith("COURIER_") and var not in known_vars:
            problem(name, f"{var} is not a variable courier-server reads")
    if "COURIER_JWT_SECRET" not in {v["name"] for v in container.get("env", []) if "valueFrom" in v}:
        problem(name, "COURIER_JWT_SECRET does not come from a Secret")
    for var in ("COURIER_LISTEN", "COURIER_METRICS_LISTEN", "COURIER_DATA_DIR", "COURIER_SHUTDOWN_GRACE"):
        if var not in env:
            problem(name, f"the ConfigMap lacks {var}")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if not env.get("COURIER_LISTEN", "").startswith("0.0.0.0:"):
        problem(name, "COURIER_LISTEN must listen on 0.0.0.0 inside the pod")
    if port_of(env["COURIER_LISTEN"]) != ports.get("grpc"):
        problem(name, f"COURIER_LISTEN {env['COURIER_LISTEN']} is not containerPort grpc {ports.get('grpc')}")
    if port_of(env["COURIER_METRICS_LISTEN"]) != ports.get("metrics"):
        problem(name, f"COURIER_METRICS_LISTEN is not containerPort metrics {ports.get('metrics')}")
    probes = {kind: container.get(f"{kind}Probe") for kind in ("startup", "liveness", "readiness")}
    for kind, probe in probes.items():
        if not probe or "grpc" not in probe:
            problem(name, f"no native gRPC {kind} probe")
            continue
        if probe["grpc"]["port"] != ports.get("grpc"):
            problem(name, f"the {kind} probe's port {probe['grpc']['port']} is not the gRPC port")
    if probes["readiness"] and probes["readiness"]["grpc"].get("service", "") != "":
        problem(name, 'readiness must ask for the overall status ""')
    for kind in ("startup", "liveness"):
        if probes[kind] and probes[kind]["grpc"].get("service", "") == "":
            problem(name, f"{kind} must not ask for the overall status, which turns NOT_SERVING at shutdown")
    # Termination: preStop + --shutdown-grace + the cleanup of aborted uploads.
    grace = parse_seconds(env["COURIER_SHUTDOWN_GRACE"])
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    needed = pre_stop + grace + ABORT_WAIT_SECONDS
    if spec.get("terminationGracePeriodSeconds", 30) < needed:
        problem(name, f"terminationGracePeriodSeconds < preStop {pre_stop} + grace {grace} + {ABORT_WAIT_SECONDS}")
    # A read-only root: the data folder must be a volume.
    security = container.get("securityContext", {})
    if not security.get("readOnlyRootFilesystem") or security.get("capabilities", {}).get("drop") != ["ALL"]:
        problem(name, "the container must have a read-only root and drop every capability")
    if spec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(name, "the pod must use the RuntimeDefault seccomp profile")
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    if not any(env["COURIER_DATA_DIR"] == m or env["COURIER_DATA_DIR"].startswith(m + "/") for m in mounts):
        problem(name, f"COURIER_DATA_DIR {env['COURIER_DATA_DIR']} is on the read-only root, not a volume")
    check_selectors(name, docs, pod["metadata"]["labels"], monitor)
    return env


def workloads(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(resource, pod template) of every Deployment, StatefulSet and Job."""
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def container_ports(template: dict) -> dict:
    """Port name -> number of a pod template's containers."""
    return {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", []) if "name" in p}


def check_selectors(name: str, docs: list[dict], pod_labels: dict, monitor: dict) -> None:
    """courier's own resources select courier's pods and nothing else; the others (NATS,
    MinIO) select the pods of exactly one workload that is not courier."""
    pods = [(w["metadata"]["name"], t["metadata"]["labels"], container_ports(t)) for w, t in workloads(docs)]
    for doc in docs:
        kind, resource = doc["kind"], doc["metadata"]["name"]
        selector = None
        if kind == "Service":
            selector = doc["spec"]["selector"]
        elif kind in ("PodDisruptionBudget", "Deployment", "StatefulSet"):
            selector = doc["spec"]["selector"]["matchLabels"]
        elif kind == "NetworkPolicy":
            selector = doc["spec"]["podSelector"]["matchLabels"]
        if selector is None:
            continue
        selected = [(w, p) for w, labels, p in pods if selects(selector, labels)]
        ours = resource == "courier" or resource.startswith("courier-")
        if ours and (not selects(selector, pod_labels) or len(selected) != 1):
            problem(name, f"{kind} {resource} does not select the courier pods alone")
        elif not ours and (len(selected) != 1 or selects(selector, pod_labels)):
            problem(name, f"{kind} {resource} selects {[w for w, _ in selected]}, not one workload other than courier")
        if kind == "Service" and len(selected) == 1:
            for port in doc["spec"]["ports"]:
                target = port["targetPort"]
                if target not in selected[0][1] and target not in selected[0][1].values():
                    problem(name, f"Service {resource} targets port {target}, not a port of {selected[0][0]}")
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": "courier"}:
            problem(name, f"HorizontalPodAutoscaler {hpa['metadata']['name']} does not scale the courier Deployment")
    # The ServiceMonitor finds exactly one Service, which has the port it scrapes.
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service" and selects(wanted, d["metadata"].get("labels", {}))]
    if len(services) != 1:
        problem(name, f"the ServiceMonitor selects {len(services)} Services, not 1")
        return
    names = {p["name"] for p in services[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in names:
            problem(name, f"the ServiceMonitor scrapes port {endpoint['port']}, which Service {services[0]['metadata']['name']} lacks")
    print(f"{name}: ports, probes, flags, termination, selectors and the ServiceMonitor agree")


def check_secrets(name: str, docs: list[dict]) -> None:
    """Every Secret key a pod reads exists in the overlay's Secret (or the Secret is one
    the operator creates)."""
    rendered = {d["metadata"]["name"]: {**d.get("data", {}), **d.get("stringData", {})} for d in docs if d["kind"] == "Secret"}
    for workload, template in workloads(docs):
        for container in template["spec"]["containers"]:
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["name"] in rendered:
                    if ref["key"] not in rendered[ref["name"]]:
                        problem(name, f"{workload['metadata']['name']} reads key {ref['key']} that Secret {ref['name']} lacks")
                elif ref["name"] not in OPERATOR_SECRETS:
                    problem(name, f"{workload['metadata']['name']} reads Secret {ref['name']}, neither in the overlay nor one the README has you create")


def url_host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "", parsed.port or default_port


def egress_allows(name: str, docs: list[dict], policy: dict, what: str, host: str, port: int) -> None:
    """The courier NetworkPolicy lets courier reach HOST:PORT: a rule with that port
    whose peers are the pods behind Service HOST when it is in the overlay, or HOST's
    namespace (SERVICE.NAMESPACE.svc) when it is not."""
    service = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == host), None)
    if "." not in host and service is None:
        problem(name, f"{what} is {host}:{port}, but the overlay has no Service {host}")
        return
    if service is not None and port not in {p["port"] for p in service["spec"]["ports"]}:
        problem(name, f"{what} is {host}:{port}, but Service {host} has no port {port}")
        return
    behind = []
    if service is not None:
        behind = [(t["metadata"]["labels"], container_ports(t)) for _, t in workloads(docs) if selects(service["spec"]["selector"], t["metadata"]["labels"])]
        target = next(p["targetPort"] for p in service["spec"]["ports"] if p["port"] == port)
        target_port = behind[0][1].get(target, target) if behind else target
    else:
        target_port = port
    parts = host.split(".")
    namespace = parts[1] if len(parts) >= 3 and parts[2] == "svc" else None
    for rule in policy["spec"].get("egress", []):
        # A named port is the destination pod's port of that name.
        rule_ports = [next((ports[p["port"]] for _, ports in behind if p.get("port") in ports), p.get("port")) for p in rule.get("ports", [])]
        if rule_ports and target_port not in rule_ports:
            continue
        peers = rule.get("to")
        if not peers:
            return  # any destination on that port
        for peer in peers:
            if service is not None and "podSelector" in peer and "namespaceSelector" not in peer:
                if any(selects(peer["podSelector"].get("matchLabels", {}), labels) for labels, _ in behind):
                    return
            if namespace and peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": namespace}:
                return
    problem(name, f"the courier NetworkPolicy does not let courier reach {what} at {host}:{port}")


def check_replicated(name: str, docs: list[dict], env: dict[str, str]) -> bool:
    """What several replicas need; returns whether the overlay runs several."""
    deployment = one(docs, "Deployment", "courier")
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    # Without replicas (the chart leaves them to its autoscaler): the autoscaler's minimum.
    replicas = deployment["spec"].get("replicas", min((h["spec"].get("minReplicas", 1) for h in hpas), default=1))
    if replicas <= 1 and not hpas:
        if env.get("COURIER_BUS"):
            problem(name, "COURIER_BUS is set but the overlay runs one replica")
        return False
    for hpa in hpas:
        if hpa["spec"].get("minReplicas", 1) < 2 or hpa["spec"]["minReplicas"] > replicas:
            problem(name, f"the autoscaler's minimum {hpa['spec'].get('minReplicas', 1)} is not between 2 and the Deployment's {replicas} replicas")
    bus = env.get("COURIER_BUS", "")
    if not bus.startswith("nats://"):
        problem(name, f"{replicas} replicas but COURIER_BUS is {bus or 'unset'}: they would not see each other's users")
    storage = env.get("COURIER_STORAGE", "")
    if not storage.startswith("s3://"):
        problem(name, f"{replicas} replicas but COURIER_STORAGE is {storage or 'the data folder'}: each would keep its own media")
    spec = deployment["spec"]
    if spec.get("strategy", {}).get("type") == "Recreate":
        problem(name, "a replicated Deployment should roll, not Recreate")
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for volume in spec["template"]["spec"].get("volumes", []):
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim is None:
            continue
        modes = claims.get(claim, {}).get("spec", {}).get("accessModes", ["<not in the overlay>"])
        if not set(modes) <= {"ReadWriteMany", "ReadOnlyMany"}:
            problem(name, f"the courier pods share claim {claim} ({', '.join(modes)}): one node, or one pod, at a time")
    policy = one(docs, "NetworkPolicy", "courier")
    if bus.startswith("nats://"):
        egress_allows(name, docs, policy, "COURIER_BUS", *url_host_port(bus, 4222))
    if storage.startswith("s3://"):
        endpoint = env.get("AWS_ENDPOINT") or f"https://s3.{env.get('AWS_REGION', 'us-east-1')}.amazonaws.com"
        egress_allows(name, docs, policy, "the S3 endpoint", *url_host_port(endpoint, 443))
    print(f"{name}: {replicas} replicas with a bus ({bus}), shared media ({storage}), no shared claim, egress to both")
    return True


def nats_config(name: str, docs: list[dict]) -> str | None:
    """The nats.conf of the overlay's NATS StatefulSet, after checking the StatefulSet
    against it; None when the overlay runs no NATS."""
    found = [d for d in docs if d["kind"] == "StatefulSet" and any("nats-server" in " ".join(c.get("command", []) + c.get("args", [])) for c in d["spec"]["template"]["spec"]["containers"])]
    if not found:
        return None
    (nats,) = found
    where = f"StatefulSet {nats['metadata']['name']}"
    (container,) = nats["spec"]["template"]["spec"]["containers"]
    args = container.get("command", []) + container.get("args", [])
    config_path = args[args.index("--config") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in nats["spec"]["template"]["spec"].get("volumes", [])}
    config_volume = volumes[mounts[str(Path(config_path).parent)]]
    config_map = one(docs, "ConfigMap", config_volume["configMap"]["name"])
    text = config_map["data"][Path(config_path).name]
    settings = dict(re.findall(r"^\s*([a-z_]+):\s*\"?([^\"\s]+)\"?\s*$", text, re.M))
    expected = {"sync_interval": "always", "ping_interval": "2s", "ping_max": "2"}
    for key, value in expected.items():
        if settings.get(key) != value:
            problem(where, f"nats.conf has {key}: {settings.get(key)}, not {value} (README, Durability)")
    ports = container_ports(nats["spec"]["template"])
    if port_of(settings.get("listen", ":0")) != ports.get("client") or port_of(settings.get("http", ":0")) != ports.get("monitor"):
        problem(where, f"nats.conf listens on {settings.get('listen')} and {settings.get('http')}, not the client and monitor ports {ports}")
    store = settings.get("store_dir", "")
    claims = {t["metadata"]["name"] for t in nats["spec"].get("volumeClaimTemplates", [])}
    if not any((store == m or store.startswith(m + "/")) and v in claims for m, v in mounts.items()):
        problem(where, f"JetStream's store_dir {store} is not on a volume claim")
    probe = container.get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/healthz?js-enabled-only=true" or probe.get("port") not in ("monitor", ports.get("monitor")):
        problem(where, f"readiness probe {probe}, not /healthz?js-enabled-only=true on the monitor port")
    governing = one(docs, "Service", nats["spec"]["serviceName"])
    if governing["spec"].get("clusterIP") != "None":
        problem(where, f"its Service {governing['metadata']['name']} is not headless")
    print(f"{name}: {name_of(nats)}: nats.conf fsyncs every write, pings every 2 s, stores JetStream on a claim; probes on /healthz")
    return text


def name_of(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def check_monitor(docs: list[dict], where: str = "monitoring") -> dict:
    monitor = one(docs, "ServiceMonitor")
    if monitor["apiVersion"] != "monitoring.coreos.com/v1":
        problem(where, f"ServiceMonitor apiVersion {monitor['apiVersion']}")
    spec = monitor.get("spec", {})
    if not spec.get("selector", {}).get("matchLabels") or not spec.get("endpoints"):
        problem(where, "the ServiceMonitor needs selector.matchLabels and endpoints")
    for endpoint in spec.get("endpoints", []):
        if set(endpoint) - {"port", "path", "interval", "scrapeTimeout"}:
            problem(where, f"unexpected ServiceMonitor endpoint fields {sorted(endpoint)}")
    return monitor


def check_dockerfile(known_vars: set[str], env: dict[str, str]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    for var in re.findall(r"\b(COURIER_[A-Z0-9_]+)=", text):
        if var not in known_vars:
            problem("Dockerfile", f"{var} is not a variable courier-server reads")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    wanted = {port_of(env["COURIER_LISTEN"]), port_of(env["COURIER_METRICS_LISTEN"])}
    if exposed != wanted:
        problem("Dockerfile", f"EXPOSE {sorted(exposed)}, the manifests use {sorted(wanted)}")
    if f"COURIER_DATA_DIR={env['COURIER_DATA_DIR']}" not in text:
        problem("Dockerfile", f"COURIER_DATA_DIR is not {env['COURIER_DATA_DIR']} as in the manifests")
    print("Dockerfile: variables and ports agree with the manifests")


def parse_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, f"a duration in s or m: {text}"
    return int(match[1]) * (60 if match[2] == "m" else 1)
