"""The checks of k8s/check (which installs the tools and builds the server first).

Renders every overlay and k8s/monitoring with kustomize, validates them with
kubernetes-validate --strict, checks the ServiceMonitor, checks the manifests (and the
Dockerfile) against the server's flags, then starts the server with an overlay's
ConfigMap and probes it as the kubelet would. Exits non-zero with every problem found.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
SERVER = os.environ["COURIER_SERVER_BIN"]
# The oldest Kubernetes the manifests use features of (preStop `sleep`, beta and on by
# default from 1.30) and the newest kubernetes-validate knows.
VERSIONS = ["1.30.0", "1.37.0"]
# What the server takes, after --shutdown-grace, to clean up aborted uploads
# (service/server.rs, ABORT_WAIT).
ABORT_WAIT_SECONDS = 5

problems: list[str] = []


def problem(where: str, text: str) -> None:
    problems.append(f"{where}: {text}")
    print(f"FAIL {where}: {text}", file=sys.stderr)


def render(path: Path) -> list[dict]:
    out = subprocess.run(["kustomize", "build", str(path)], check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(name: str, docs: list[dict], workdir: Path) -> None:
    """kubernetes-validate --strict on every resource it has a schema for."""
    known = [d for d in docs if d["kind"] != "ServiceMonitor"]
    file = workdir / f"{name}.yaml"
    file.write_text(yaml.safe_dump_all(known))
    for version in VERSIONS:
        run = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", version, str(file)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            problem(name, f"kubernetes-validate {version}:\n{run.stdout}{run.stderr}")
    print(f"{name}: {len(known)} resources valid against Kubernetes {', '.join(VERSIONS)} (strict)")


def server_env_vars() -> set[str]:
    help_text = subprocess.run([SERVER, "serve", "--help"], check=True, capture_output=True, text=True).stdout
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
    check_selectors(name, docs, pod["metadata"]["labels"], ports, monitor)
    return env


def check_selectors(name: str, docs: list[dict], pod_labels: dict, ports: dict, monitor: dict) -> None:
    for doc in docs:
        kind = doc["kind"]
        selector = None
        if kind == "Service":
            selector = doc["spec"]["selector"]
            for port in doc["spec"]["ports"]:
                if port["targetPort"] not in ports:
                    problem(name, f"Service {doc['metadata']['name']} targets port {port['targetPort']}, not a container port")
        elif kind in ("PodDisruptionBudget", "Deployment"):
            selector = doc["spec"]["selector"]["matchLabels"]
        elif kind == "NetworkPolicy":
            selector = doc["spec"]["podSelector"]["matchLabels"]
        if selector is not None and not selects(selector, pod_labels):
            problem(name, f"{kind} {doc['metadata']['name']} does not select the courier pods")
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


def check_monitor(docs: list[dict]) -> dict:
    monitor = one(docs, "ServiceMonitor")
    if monitor["apiVersion"] != "monitoring.coreos.com/v1":
        problem("monitoring", f"ServiceMonitor apiVersion {monitor['apiVersion']}")
    spec = monitor.get("spec", {})
    if not spec.get("selector", {}).get("matchLabels") or not spec.get("endpoints"):
        problem("monitoring", "the ServiceMonitor needs selector.matchLabels and endpoints")
    for endpoint in spec.get("endpoints", []):
        if set(endpoint) - {"port", "path", "interval", "scrapeTimeout"}:
            problem("monitoring", f"unexpected ServiceMonitor endpoint fields {sorted(endpoint)}")
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


def probe_server(name: str, env: dict[str, str], container: dict, dashboard: str) -> None:
    """Starts the server with the overlay's environment and probes it like the kubelet."""
    data = Path(tempfile.mkdtemp(prefix="courier-k8s-check-"))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_")}
    run_env.update({k: v for k, v in env.items() if v != "<from a Secret>"})
    run_env.update(
        COURIER_LISTEN="127.0.0.1:0",
        COURIER_METRICS_LISTEN="127.0.0.1:0",
        COURIER_DATA_DIR=str(data),
        COURIER_JWT_SECRET=secrets.token_hex(32),
    )
    args = [SERVER, *container.get("args", [])]
    server = subprocess.Popen(args, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        addr = metrics = None
        deadline = time.monotonic() + 30
        assert server.stdout is not None
        for line in server.stdout:
            fields = json.loads(line) if line.startswith("{") else {}
            if fields.get("message") == "courier-server listening":
                addr, metrics = fields["addr"], fields["metrics_addr"]
                break
            if time.monotonic() > deadline:
                break
        if not addr:
            problem(name, "the server did not start with the ConfigMap's environment")
            return
        for kind in ("startup", "liveness", "readiness"):
            service = container[f"{kind}Probe"]["grpc"].get("service", "")
            answer = subprocess.run(
                ["grpcurl", "-plaintext", "-d", json.dumps({"service": service}), addr, "grpc.health.v1.Health/Check"],
                capture_output=True,
                text=True,
            )
            status = json.loads(answer.stdout or "{}").get("status") if answer.returncode == 0 else None
            if status != "SERVING":
                problem(name, f"{kind} probe (service {service!r}) got {status or answer.stderr.strip()}")
            else:
                print(f"{name}: {kind} probe, health service {service!r}: SERVING")
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
            scraped = response.read().decode()
        series = {line.split("{")[0].split(" ")[0] for line in scraped.splitlines() if line.startswith("courier_")}
        missing = sorted(set(re.findall(r"\b(courier_[a-z_]+)", dashboard)) - series)
        for metric in missing:
            problem(name, f"the dashboard reads {metric}, which /metrics does not serve")
        if not missing:
            print(f"{name}: every series the dashboard reads is served")
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=parse_seconds(env["COURIER_SHUTDOWN_GRACE"]) + ABORT_WAIT_SECONDS)
        if code != 0:
            problem(name, f"the server exited with {code} on SIGTERM")
        else:
            print(f"{name}: SIGTERM stops the server cleanly")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    known_vars = server_env_vars()
    dashboard = (K8S / "monitoring" / "courier-dashboard.json").read_text()
    json.loads(dashboard)
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        monitoring = render(K8S / "monitoring")
        validate("monitoring", monitoring, workdir)
        monitor = check_monitor(monitoring)
        envs = {}
        for overlay in sorted((K8S / "overlays").iterdir()):
            docs = render(overlay)
            name = f"overlays/{overlay.name}"
            print(f"{name}: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs))
            validate(overlay.name, docs, workdir)
            envs[name] = (check_overlay(name, docs, known_vars, monitor), docs)
    env, docs = envs["overlays/single"]
    check_dockerfile(known_vars, env)
    # The overlays on a local store start here; one on S3 needs its bucket.
    for name, (env, docs) in envs.items():
        if env.get("COURIER_STORAGE", "").startswith("s3://"):
            print(f"{name}: media on {env['COURIER_STORAGE']}: not started here (checked statically)")
            continue
        container = one(docs, "Deployment", "courier")["spec"]["template"]["spec"]["containers"][0]
        probe_server(name, env, container, dashboard)
    if problems:
        print(f"\nk8s/check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("k8s/check: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
