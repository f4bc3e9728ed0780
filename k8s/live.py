"""The live half of k8s/check: nats-server and courier-server started with an
overlay's (or a chart example's) configuration on 127.0.0.1 and probed as the kubelet
would. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from manifests import (
    ABORT_WAIT_SECONDS,
    NATS_SERVER,
    RECOMMENDED_NATS_CONF,
    SERVER,
    parse_seconds,
    problem,
)

def lines_of(process: subprocess.Popen) -> queue.Queue:
    """The process's output lines, read on a thread so that every wait is bounded."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def stop(process: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after TIMEOUT; the exit code of the SIGTERM, or None."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def start_nats(name: str, config: str, work: Path) -> tuple[subprocess.Popen, str, str] | None:
    """A nats-server with an overlay's configuration, its addresses moved to 127.0.0.1
    and its store to WORK; returns it, its client URL and its monitoring URL once
    JetStream is up."""
    client, monitor = free_port(), free_port()
    for key, value in (("listen", f"127.0.0.1:{client}"), ("http", f"127.0.0.1:{monitor}"), ("store_dir", f'"{work / "jetstream"}"')):
        config, count = re.subn(rf"^(\s*){key}:.*$", rf"\g<1>{key}: {value}", config, flags=re.M)
        if count != 1:
            problem(name, f"nats.conf sets {key} {count} times, not once")
            return None
    (work / "nats.conf").write_text(config)
    log = open(work / "nats.log", "w")
    nats = subprocess.Popen([NATS_SERVER, "--config", str(work / "nats.conf")], stdout=log, stderr=subprocess.STDOUT)
    # The readiness probe of overlays/local: up, with JetStream enabled.
    health = f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and nats.poll() is None:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    print(f"{name}: nats-server with the overlay's nats.conf is ready ({health.split('/', 3)[3]})")
                    return nats, f"nats://127.0.0.1:{client}", f"http://127.0.0.1:{monitor}"
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    problem(name, f"nats-server did not turn ready within 20 s:\n{(work / 'nats.log').read_text()[-2000:]}")
    stop(nats, 5)
    return None


def check_bus_in_use(name: str, monitor: str, replicas: int) -> None:
    """The servers took COURIER_BUS from the ConfigMap: each holds a connection to the
    nats-server, and they made courier's JetStream streams there."""
    with urllib.request.urlopen(f"{monitor}/connz", timeout=5) as response:
        connections = json.load(response).get("num_connections", 0)
    with urllib.request.urlopen(f"{monitor}/jsz?streams=true", timeout=5) as response:
        jsz = json.load(response)
    streams = sorted(s["name"] for a in jsz.get("account_details", []) for s in a.get("stream_detail", []))
    if connections < replicas or not any(s.startswith("COURIER_") for s in streams):
        problem(name, f"the servers do not use the nats-server: {connections} connection(s), streams {streams}")
    else:
        print(f"{name}: the {replicas} servers are connected to nats-server ({connections} connections), streams {', '.join(streams)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(addr: str, service: str, tls: list[str] | None = None) -> str:
    """The health service's answer for SERVICE; TLS: grpcurl's TLS flags, else plaintext."""
    answer = subprocess.run(
        ["grpcurl", *(tls or ["-plaintext"]), "-max-time", "5", "-d", json.dumps({"service": service}), addr, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if answer.returncode != 0:
        return answer.stderr.strip() or f"grpcurl exited {answer.returncode}"
    return json.loads(answer.stdout or "{}").get("status", "no status")


def start_server(name: str, container: dict, env: dict[str, str], servers: list[subprocess.Popen]) -> tuple[str, str] | None:
    """Starts the server with the container's args and ENV (appending it to SERVERS, for
    the caller to stop); its gRPC and metrics addresses once it listens, within 30 s."""
    server = subprocess.Popen([SERVER, *container.get("args", [])], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    servers.append(server)
    lines, deadline, output = lines_of(server), time.monotonic() + 30, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        output.append(line)
        fields = json.loads(line) if line.startswith("{") else {}
        if fields.get("message") == "courier-server listening":
            return fields["addr"], fields["metrics_addr"]
    problem(name, "the server did not start with the ConfigMap's environment:\n" + "".join(output[-20:]))
    return None


def probe_server(name: str, env: dict[str, str], container: dict, dashboard: str, nats_conf: str | None) -> None:
    """Starts the server with the overlay's environment and probes it like the kubelet.
    With COURIER_BUS, first a nats-server with the overlay's nats.conf (or the
    recommended one) on 127.0.0.1, and two replicas on it; media on S3 move to a temp
    folder (the bucket is checked statically)."""
    work = Path(tempfile.mkdtemp(prefix="courier-k8s-check-"))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("COURIER_", "AWS_"))}
    run_env.update({k: v for k, v in env.items() if v != "<from a Secret>" and not k.startswith("AWS_")})
    run_env.update(COURIER_LISTEN="127.0.0.1:0", COURIER_METRICS_LISTEN="127.0.0.1:0", COURIER_JWT_SECRET=secrets.token_hex(32))
    if env.get("COURIER_STORAGE", "").startswith("s3://"):
        run_env["COURIER_STORAGE"] = str(work / "media")
        print(f"{name}: media on {env['COURIER_STORAGE']} moved to a temp folder here (the bucket is checked statically)")
    nats, nats_monitor = None, ""
    servers: list[subprocess.Popen] = []
    try:
        replicas = 1
        if env.get("COURIER_BUS"):
            started = start_nats(name, nats_conf or RECOMMENDED_NATS_CONF.read_text(), work)
            if started is None:
                return
            nats, run_env["COURIER_BUS"], nats_monitor = started
            replicas = 2
        addrs = []
        for replica in range(replicas):
            data = work / f"data{replica}"
            data.mkdir()
            listening = start_server(name, container, {**run_env, "COURIER_DATA_DIR": str(data)}, servers)
            if listening is None:
                return
            addrs.append(listening)
        for replica, (addr, metrics) in enumerate(addrs):
            who = f"{name} (replica {replica + 1} of {replicas})" if replicas > 1 else name
            for kind in ("startup", "liveness", "readiness"):
                service = container[f"{kind}Probe"]["grpc"].get("service", "")
                # Readiness follows the media store and the bus, checked every
                # --health-check-interval: give it a few seconds to turn SERVING.
                deadline, status = time.monotonic() + 15, ""
                while time.monotonic() < deadline:
                    status = health(addr, service)
                    if status == "SERVING":
                        break
                    time.sleep(0.5)
                if status != "SERVING":
                    problem(who, f"{kind} probe (service {service!r}) got {status}")
                else:
                    print(f"{who}: {kind} probe, health service {service!r}: SERVING")
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
                scraped = response.read().decode()
            series = {line.split("{")[0].split(" ")[0] for line in scraped.splitlines() if line.startswith("courier_")}
            missing = sorted(set(re.findall(r"\b(courier_[a-z_]+)", dashboard)) - series)
            for metric in missing:
                problem(who, f"the dashboard reads {metric}, which /metrics does not serve")
            if not missing:
                print(f"{who}: every series the dashboard reads is served")
        if nats is not None:
            check_bus_in_use(name, nats_monitor, replicas)
        grace = parse_seconds(env["COURIER_SHUTDOWN_GRACE"]) + ABORT_WAIT_SECONDS
        for server in servers:
            code = stop(server, grace)
            if code != 0:
                problem(name, f"the server exited with {code} on SIGTERM")
            else:
                print(f"{name}: SIGTERM stops the server cleanly")
    finally:
        for server in servers:
            stop(server, 5)
        if nats is not None and stop(nats, 10) != 0:
            problem(name, "nats-server did not stop cleanly on SIGTERM")
        shutil.rmtree(work, ignore_errors=True)
