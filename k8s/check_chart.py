"""The Helm chart's part of k8s/check (called by check.py's main; the checks it shares with the overlays are in manifests.py and live.py).

For each example values file (k8s/chart/examples/NAME.yaml): `helm lint --strict`,
`helm template` as release `courier`, the same checks as the overlay NAME's render
(kubernetes-validate, ports, probes, variables, selectors, secrets, replicas, NATS),
and a comparison with that render: every resource the overlay has, the chart has, with
the same settings (the Deployment field by field: image, ports, environment with the
ConfigMap and Secret values resolved, probes, resources, security contexts,
termination grace, volumes, strategy, replicas and the autoscaler's bounds; labels and
the kustomize name hashes aside). Then the switches: the ServiceMonitor and dashboard
on (the same as k8s/monitoring's), the budget, autoscaler and policies off, TLS on
(its Secret's files where the server reads them). Returns what check.py's servers are
started with: each example's environment and container.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

import live
import manifests as k

CHART = k.K8S / "chart" / "courier"
EXAMPLES = k.K8S / "chart" / "examples"
# The release name that gives the overlays' names (courier, courier-headless, ...).
RELEASE = "courier"
# Labels the chart adds to selectors (the release) or the overlays do (kustomize's
# common labels): not settings.
LABEL_NOISE = {"app.kubernetes.io/instance", "app.kubernetes.io/part-of"}
# kustomize's generated names end in a hash of the content.
KUSTOMIZE_HASH = re.compile(r"-[a-z0-9]{10}$")


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["helm", *args], capture_output=True, text=True, timeout=120)


def render(where: str, values: Path | None, *sets: str) -> list[dict] | None:
    """`helm template` of the chart with VALUES and --set SETS; None (and a problem
    with helm's message) when it does not render."""
    args = ["template", RELEASE, str(CHART), "--namespace", "default"]
    if values is not None:
        args += ["-f", str(values)]
    for value in sets:
        args += ["--set", value]
    run = helm(*args)
    if run.returncode != 0:
        k.problem(where, f"helm template {' '.join(args[3:])} fails:\n{quiet(run.stderr)}")
        return None
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def quiet(text: str) -> str:
    """helm's output without its notes about the chart's links (files/)."""
    return "\n".join(line for line in text.splitlines() if "found symbolic link" not in line).strip()


def lint(where: str, values: Path) -> None:
    run = helm("lint", "--strict", str(CHART), "-f", str(values))
    if run.returncode != 0:
        k.problem(where, f"helm lint --strict -f {values.relative_to(k.ROOT)} fails:\n{quiet(run.stdout + run.stderr)}")
    else:
        print(f"{where}: helm lint --strict passes")


# Values whose defaults are maps taken as they are (documented as one row each).
MAP_VALUES = {"server.env", "server.resources", "autoscaling.behavior", "nats.resources", "minio.resources"}


def check_values_documented() -> None:
    """Every value of values.yaml is a row of the chart's README (`name` in its first
    column), and every row is a value."""
    def leaves(values: dict, prefix: str = ""):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in MAP_VALUES:
                yield from leaves(value, path + ".")
            else:
                yield path

    values = set(leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    rows = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", (CHART / "README.md").read_text(), re.M))
    for value in sorted(values - rows):
        k.problem("k8s/chart/courier/README.md", f"value {value} is not documented")
    for row in sorted(rows - values):
        k.problem("k8s/chart/courier/README.md", f"documents {row}, which values.yaml does not have")
    if values == rows:
        print(f"k8s/chart/courier: each of its {len(values)} values is documented in its README")


def check_examples(known_vars: set[str], overlays: dict, workdir: Path) -> dict:
    """Every example against its overlay; returns name -> (env, docs, nats.conf)."""
    check_values_documented()
    rendered = {}
    examples = sorted(EXAMPLES.glob("*.yaml"))
    for overlay in overlays:
        if not (EXAMPLES / f"{overlay.split('/')[1]}.yaml").exists():
            k.problem("k8s/chart/examples", f"no example values for {overlay}")
    for values in examples:
        name = f"chart/{values.stem}"
        lint(name, values)
        docs = render(name, values)
        with_monitor = render(name, values, "serviceMonitor.enabled=true", "dashboard.enabled=true")
        if docs is None or with_monitor is None:
            continue
        print(f"{name}: " + ", ".join(k.name_of(d) for d in docs))
        k.validate(name, with_monitor, workdir)
        monitor = check_monitoring(name, docs, with_monitor)
        env = k.check_overlay(name, docs, known_vars, monitor)
        k.check_secrets(name, docs)
        k.check_replicated(name, docs, env)
        nats_conf = k.nats_config(name, docs)
        overlay = f"overlays/{values.stem}"
        if overlay not in overlays:
            k.problem(name, f"no overlay {overlay} to compare with")
        else:
            compare(name, overlay, overlays[overlay][1], docs)
        rendered[name] = (env, docs, nats_conf)
    if not examples:
        k.problem("k8s/chart/examples", "no example values files")
    return rendered


def check_monitoring(name: str, docs: list[dict], with_monitor: list[dict]) -> dict:
    """serviceMonitor.enabled and dashboard.enabled add the ServiceMonitor and the
    dashboard of k8s/monitoring, and change nothing else; returns the ServiceMonitor."""
    added = [d for d in with_monitor if (d["kind"], d["metadata"]["name"]) not in {(e["kind"], e["metadata"]["name"]) for e in docs}]
    if sorted(k.name_of(d) for d in added) != ["ConfigMap/courier-dashboard", "ServiceMonitor/courier"]:
        k.problem(name, f"serviceMonitor.enabled and dashboard.enabled add {[k.name_of(d) for d in added]}")
    if [d for d in with_monitor if d not in added] != docs:
        k.problem(name, "serviceMonitor.enabled and dashboard.enabled change other resources")
    monitor = k.one(with_monitor, "ServiceMonitor")
    reference = k.render(k.K8S / "monitoring")
    wanted = k.one(reference, "ServiceMonitor")
    selector = {key: v for key, v in monitor["spec"]["selector"]["matchLabels"].items() if key not in LABEL_NOISE}
    if selector != wanted["spec"]["selector"]["matchLabels"] or monitor["spec"]["endpoints"] != wanted["spec"]["endpoints"]:
        k.problem(name, f"the chart's ServiceMonitor {monitor['spec']} is not k8s/monitoring's {wanted['spec']}")
    dashboard = k.one(with_monitor, "ConfigMap", "courier-dashboard")
    if dashboard["data"] != k.one(reference, "ConfigMap", "courier-dashboard")["data"] or dashboard["metadata"]["labels"].get("grafana_dashboard") != "1":
        k.problem(name, "the chart's dashboard ConfigMap is not k8s/monitoring's (data, label grafana_dashboard=1)")
    return k.check_monitor(with_monitor, name)


def normalized(docs: list[dict]) -> dict[str, dict]:
    """The resources by kind/name, as settings: kustomize's name hashes removed (and
    every reference to them), the Deployment's environment resolved (ConfigMap and
    Secret values instead of their names), labels and pod-template metadata dropped,
    selectors without the chart's release label and kustomize's part-of."""
    renames = {}
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret") and KUSTOMIZE_HASH.search(doc["metadata"]["name"]):
            renames[doc["metadata"]["name"]] = KUSTOMIZE_HASH.sub("", doc["metadata"]["name"])
    docs = [rename(d, renames) for d in docs]
    # Secret values compared by digest, so that no message prints one.
    docs = [{**d, "data": {key: digest(v) for key, v in d.get("data", {}).items()}} if d["kind"] == "Secret" else d for d in docs]
    values = {(d["kind"], d["metadata"]["name"]): {**d.get("data", {})} for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    out = {}
    for doc in docs:
        doc = scrub(doc)
        metadata = {key: v for key, v in doc["metadata"].items() if key in ("name", "annotations")}
        out[f"{doc['kind']}/{doc['metadata']['name']}"] = {**doc, "metadata": metadata}
    for key, doc in out.items():
        if doc["kind"] == "Deployment":
            resolve_environment(doc, values)
            hpa = next((d for d in out.values() if d["kind"] == "HorizontalPodAutoscaler"), None)
            # The pods it starts with: its replicas, or (the chart leaves them to the
            # autoscaler) the autoscaler's minimum.
            doc["spec"]["replicas"] = doc["spec"].get("replicas", hpa["spec"]["minReplicas"] if hpa else 1)
    return out


def digest(encoded: str) -> str:
    return "sha256:" + hashlib.sha256(base64.b64decode(encoded)).hexdigest()[:12]


def rename(value, renames: dict):
    if isinstance(value, dict):
        return {key: rename(v, renames) for key, v in value.items()}
    if isinstance(value, list):
        return [rename(v, renames) for v in value]
    return renames.get(value, value) if isinstance(value, str) else value


def scrub(value, key: str = ""):
    """Without labels, pod-template metadata and selector noise."""
    if isinstance(value, dict):
        if key in ("matchLabels", "selector") and all(isinstance(v, str) for v in value.values()):
            return {k2: v for k2, v in value.items() if k2 not in LABEL_NOISE}
        out = {}
        for k2, v in value.items():
            if k2 == "labels" or (key == "template" and k2 == "metadata"):
                continue
            out[k2] = scrub(v, k2)
        return out
    if isinstance(value, list):
        return [scrub(v, key) for v in value]
    return value


def resolve_environment(deployment: dict, values: dict) -> None:
    """Each container's envFrom and secretKeyRefs replaced by the values they give."""
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        env = {}
        for source in container.pop("envFrom", []):
            env.update(values.get(("ConfigMap", source["configMapRef"]["name"]), {"<ConfigMap not rendered>": source["configMapRef"]["name"]}))
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and ("Secret", ref["name"]) in values:
                encoded = values[("Secret", ref["name"])].get(ref["key"], "")
                env[var["name"]] = f"<Secret {ref['name']}, key {ref['key']}: {encoded}>"
            elif ref:
                env[var["name"]] = f"<the operator's Secret {ref['name']}, key {ref['key']}>"
            else:
                env[var["name"]] = var.get("value")
        container["env"] = env


def differences(overlay, chart, path: str) -> list[str]:
    if isinstance(overlay, dict) and isinstance(chart, dict):
        found = []
        for key in sorted(set(overlay) | set(chart), key=str):
            if key not in chart:
                found.append(f"{path}.{key}: the overlay has {short(overlay[key])}, the chart nothing")
            elif key not in overlay:
                found.append(f"{path}.{key}: the chart has {short(chart[key])}, the overlay nothing")
            else:
                found += differences(overlay[key], chart[key], f"{path}.{key}")
        return found
    if isinstance(overlay, list) and isinstance(chart, list) and len(overlay) == len(chart):
        return [d for i, (a, b) in enumerate(zip(overlay, chart)) for d in differences(a, b, f"{path}[{i}]")]
    if overlay != chart:
        return [f"{path}: the overlay has {short(overlay)}, the chart {short(chart)}"]
    return []


def short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 300 else text[:300] + "..."


def compare(name: str, overlay: str, overlay_docs: list[dict], chart_docs: list[dict]) -> None:
    """The chart renders what the overlay does: the same resources, the same settings."""
    want, have = normalized(overlay_docs), normalized(chart_docs)
    for key in sorted(set(want) - set(have)):
        k.problem(name, f"{overlay} has {key}, the chart does not render it")
    for key in sorted(set(have) - set(want)):
        k.problem(name, f"the chart renders {key}, which {overlay} does not have")
    found = 0
    for key in sorted(set(want) & set(have)):
        for difference in differences(want[key], have[key], key):
            k.problem(name, f"differs from {overlay}: {difference}")
            found += 1
    if not found:
        print(f"{name}: renders what {overlay} does ({len(want)} resources; the Deployment's image, ports, environment, probes, resources, security, grace, volumes and replicas alike)")


def check_switches(known_vars: set[str], workdir: Path) -> list[dict]:
    """The switches beyond the examples, and values the chart must refuse. Returns the
    TLS renders (env, container, files) for servers started with a Secret's files."""
    local = EXAMPLES / "local.yaml"
    docs = render("chart switches", local, "podDisruptionBudget.enabled=false", "networkPolicy.enabled=false", "autoscaling.enabled=false", "replicaCount=3")
    if docs is not None:
        left = [k.name_of(d) for d in docs if d["kind"] in ("PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler")]
        replicas = k.one(docs, "Deployment", "courier")["spec"].get("replicas")
        if left or replicas != 3:
            k.problem("chart switches", f"with the budget, policies and autoscaler off the chart still renders {left}, replicas {replicas}")
        else:
            print("chart switches: podDisruptionBudget, networkPolicy and autoscaling off render none of them (replicas: 3)")
    for sets, reason, says in (
        (["replicaCount=2"], "replicas without a bus", "need a bus"),
        (["autoscaling.enabled=true", "persistence.enabled=false", "bus.url=nats://nats:4222"], "replicas with media in a folder", "need media on S3"),
        (["replicaCount=2", "bus.url=nats://nats:4222", "s3.url=s3://b/p"], "replicas on one ReadWriteOnce claim", "ReadWriteOnce"),
        (["tls.enabled=true"], "TLS without its Secret", "tls.secretName"),
        (["tls.enabled=true", "tls.secretName=x", "tls.clientCA=true", "tls.probes=grpc"], "gRPC probes with client certificates", "no client certificate"),
        (["server.env.COURIER_LISTEN=0.0.0.0:1"], "a flag that has its own value", "its own value"),
        (["server.grpcPort=grpc"], "a port that is not a number", "want integer"),
    ):
        run = helm("template", RELEASE, str(CHART), *[a for s in sets for a in ("--set", s)])
        lines = [line for line in quiet(run.stderr).splitlines() if line.strip() and not line.startswith("Use --debug")]
        if run.returncode == 0 or not any(says in line for line in lines):
            k.problem("chart switches", f"--set {' '.join(sets)} ({reason}) should be refused saying {says!r}; helm: {lines or 'rendered'}")
        else:
            print(f"chart switches: --set {' '.join(sets)} is refused ({reason}): {lines[-1]}")
    renders = []
    # TCP probes (any Kubernetes) and client certificates; the native gRPC probes in
    # mode TLS (Kubernetes 1.37, the first whose schema has it).
    for probes, sets, versions in (("tcp", ["tls.clientCA=true"], k.VERSIONS), ("grpc", [], k.VERSIONS[-1:])):
        name = f"chart tls (probes: {probes})"
        docs = render(name, None, "tls.enabled=true", "tls.secretName=courier-tls", f"tls.probes={probes}", *sets)
        if docs is None:
            continue
        k.validate(name, docs, workdir, versions)
        checked = check_tls(name, docs, known_vars, probes)
        if checked is not None:
            renders.append(checked)
    return renders


def check_tls(name: str, docs: list[dict], known_vars: set[str], probes: str) -> dict | None:
    """The TLS variables name files of the Secret's volume; the probes are TCP connects
    on the gRPC port, or the native gRPC probes in mode TLS."""
    deployment = k.one(docs, "Deployment", "courier")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = dict(k.one(docs, "ConfigMap", "courier-config")["data"])
    for var in env:
        if var.startswith("COURIER_") and var not in known_vars:
            k.problem(name, f"{var} is not a variable courier-server reads")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    files = {}
    wanted = [("COURIER_TLS_CERT", "tls.crt"), ("COURIER_TLS_KEY", "tls.key")] + ([("COURIER_TLS_CLIENT_CA", "ca.crt")] if probes == "tcp" else [])
    for var, key in wanted:
        path = Path(env.get(var, "/nowhere"))
        volume = volumes.get(mounts.get(str(path.parent), ""), {})
        if volume.get("secret", {}).get("secretName") != "courier-tls" or path.name != key:
            k.problem(name, f"{var}={env.get(var)} is not key {key} of the Secret courier-tls's volume")
        files[var] = key
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for kind in ("startup", "liveness", "readiness"):
        probe = container.get(f"{kind}Probe", {})
        if probes == "tcp" and probe.get("tcpSocket", {}).get("port") != ports["grpc"]:
            k.problem(name, f"the {kind} probe must be a TCP connect to the gRPC port, not {probe}")
        if probes == "grpc" and (probe.get("grpc", {}).get("mode") != "TLS" or probe["grpc"].get("port") != ports["grpc"]):
            k.problem(name, f"the {kind} probe must be a gRPC probe in mode TLS on the gRPC port, not {probe}")
    service = k.one(docs, "Service", "courier")
    if any(p.get("appProtocol") == "kubernetes.io/h2c" for p in service["spec"]["ports"]):
        k.problem(name, "with TLS the Service's gRPC port is not h2c")
    print(f"{name}: COURIER_TLS_* name the Secret's {', '.join(files.values())}; {probes} probes on the gRPC port")
    return {"name": name, "env": env, "container": container, "files": files, "probes": probes}


def probe_tls_server(tls: dict) -> None:
    """The server started with a TLS render's ConfigMap and a Secret's files (from
    `courier-server tls-dev`) where the volume puts them, probed as the kubelet would
    (a TCP connect; or each gRPC probe's service name over TLS, unverified); a client
    with the CA (and a client certificate) gets SERVING, a plaintext one nothing; then
    SIGTERM stops it."""
    name = tls["name"]
    work = Path(tempfile.mkdtemp(prefix="courier-k8s-check-tls-"))
    servers: list[subprocess.Popen] = []
    try:
        dev = work / "dev"
        subprocess.run([k.SERVER, "tls-dev", "--out", str(dev), "--hosts", "localhost,127.0.0.1"], check=True, capture_output=True, timeout=30)
        secret = work / "secret"  # the Secret's volume: keys tls.crt, tls.key, ca.crt
        secret.mkdir()
        for key, made in (("tls.crt", "server.pem"), ("tls.key", "server.key"), ("ca.crt", "ca.pem")):
            (secret / key).write_bytes((dev / made).read_bytes())
        env = {key: v for key, v in os.environ.items() if not key.startswith(("COURIER_", "AWS_"))}
        env.update(tls["env"])
        for var, key in tls["files"].items():
            env[var] = str(secret / key)
        (work / "data").mkdir()
        env.update(COURIER_LISTEN="127.0.0.1:0", COURIER_METRICS_LISTEN="127.0.0.1:0", COURIER_DATA_DIR=str(work / "data"), COURIER_JWT_SECRET=secrets.token_hex(32))
        started = live.start_server(name, tls["container"], env, servers)
        if started is None:
            return
        addr = started[0]
        host, port = addr.rsplit(":", 1)
        if tls["probes"] == "tcp":
            with socket.create_connection((host, int(port)), timeout=5):
                print(f"{name}: the TCP probe connects to the TLS port")
        else:
            for kind in ("startup", "liveness", "readiness"):
                service = tls["container"][f"{kind}Probe"]["grpc"].get("service", "")
                deadline, status = time.monotonic() + 15, ""
                while time.monotonic() < deadline and (status := live.health(addr, service, ["-insecure"])) != "SERVING":
                    time.sleep(0.5)
                if status != "SERVING":
                    k.problem(name, f"{kind} probe over TLS (service {service!r}) got {status}")
                else:
                    print(f"{name}: {kind} probe over TLS, health service {service!r}: SERVING")
        client = ["-cacert", str(dev / "ca.pem"), "-servername", "localhost"]
        if "COURIER_TLS_CLIENT_CA" in env:
            client += ["-cert", str(dev / "client.pem"), "-key", str(dev / "client.key")]
        status = live.health(addr, "", client)
        if status != "SERVING":
            k.problem(name, f"a TLS client with the Secret's CA got {status}")
        else:
            print(f"{name}: a client with the Secret's ca.crt{' and a client certificate' if len(client) > 4 else ''}: SERVING")
        if live.health(addr, "") == "SERVING":
            k.problem(name, "a plaintext client is served on the TLS port")
        code = live.stop(servers[0], int(env["COURIER_SHUTDOWN_GRACE"].rstrip("s")) + k.ABORT_WAIT_SECONDS)
        if code != 0:
            k.problem(name, f"the server exited with {code} on SIGTERM")
    finally:
        for server in servers:
            live.stop(server, 5)
        shutil.rmtree(work, ignore_errors=True)
