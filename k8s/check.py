"""The checks of k8s/check (which installs the tools and builds the server first).

Renders every overlay and k8s/monitoring with kustomize, validates them with
kubernetes-validate --strict, checks the ServiceMonitor, checks the manifests (and the
Dockerfile) against the server's flags, checks what replicated overlays need (a bus, S3,
no ReadWriteOnce claim, egress to both) and the in-cluster NATS, then starts the server
with each overlay's ConfigMap (beside a local nats-server with the overlay's nats.conf
when it has a bus) and probes it as the kubelet would; the Helm chart likewise, and
compared with the overlays (k8s/check_chart.py). Exits non-zero with every problem
found.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import check_chart
from live import probe_server
from manifests import (
    K8S,
    check_dockerfile,
    check_monitor,
    check_overlay,
    check_replicated,
    check_secrets,
    name_of,
    nats_config,
    one,
    problem,
    problems,
    render,
    server_env_vars,
    validate,
)


def main() -> int:
    known_vars = server_env_vars()
    dashboard = (K8S / "monitoring" / "courier-dashboard.json").read_text()
    json.loads(dashboard)
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        monitoring = render(K8S / "monitoring")
        validate("monitoring", monitoring, workdir)
        monitor = check_monitor(monitoring)
        overlays = {}
        for overlay in sorted((K8S / "overlays").iterdir()):
            docs = render(overlay)
            name = f"overlays/{overlay.name}"
            print(f"{name}: " + ", ".join(name_of(d) for d in docs))
            validate(overlay.name, docs, workdir)
            env = check_overlay(name, docs, known_vars, monitor)
            check_secrets(name, docs)
            replicated = check_replicated(name, docs, env)
            overlays[name] = (env, docs, nats_config(name, docs), replicated)
        charts = check_chart.check_examples(known_vars, overlays, workdir)
        tls = check_chart.check_switches(known_vars, workdir)
    for wanted in ("overlays/single", "overlays/local", "overlays/aws"):
        if wanted not in overlays:
            problem(wanted, "missing")
    if not any(replicated for *_, replicated in overlays.values()):
        problem("k8s/overlays", "no replicated overlay")
    check_dockerfile(known_vars, overlays["overlays/single"][0])
    runs = [(name, env, docs, nats_conf) for name, (env, docs, nats_conf, _) in overlays.items()]
    runs += [(name, env, docs, nats_conf) for name, (env, docs, nats_conf) in charts.items()]
    for name, env, docs, nats_conf in runs:
        container = one(docs, "Deployment", "courier")["spec"]["template"]["spec"]["containers"][0]
        probe_server(name, env, container, dashboard, nats_conf)
    for tls_render in tls:
        check_chart.probe_tls_server(tls_render)
    if problems:
        print(f"\nk8s/check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("k8s/check: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
