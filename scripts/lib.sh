# Shared helpers of courier's scripts: tools installed from the package registries
# (cached between runs) and throwaway servers on 127.0.0.1 that are stopped on exit.
# Sourced, not run.

TOOLS_DIR=${COURIER_TOOLS_DIR:-$HOME/.cache/courier/tools}
export GOBIN="$TOOLS_DIR/bin"
export PATH="$GOBIN:$PATH"
mkdir -p "$GOBIN"

# Pinned so that every machine tests against the same servers and tools.
MINIO_MODULE=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
GRPCURL_MODULE=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
TOXIPROXY_MODULE=github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
NATS_MODULE=github.com/nats-io/nats-server/v2@v2.15.2
PROTOC_GEN_DOC_MODULE=github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc@v1.5.1
# k8s/check lints and renders the Helm chart (k8s/chart/courier) with it.
HELM_MODULE=helm.sh/helm/v4/cmd/helm@v4.3.2

step() { printf '\n==> %s\n' "$*" >&2; }

# go_tool NAME MODULE@VERSION [DIR]: builds a Go tool into DIR ($GOBIN by default)
# unless that version is there already (a stamp file beside it records which
# module@version it was built from; a binary from before stamps is taken as it is).
go_tool() {
  local dir="${3:-$GOBIN}"
  local stamp="$dir/.$1.module"
  if [ -x "$dir/$1" ] && [ ! -e "$stamp" ]; then
    echo "$2" >"$stamp"
  fi
  if [ ! -x "$dir/$1" ] || [ "$(cat "$stamp")" != "$2" ]; then
    step "building $1 with go install $2 (once; cached in $dir)"
    mkdir -p "$dir"
    GOBIN="$dir" go install "$2"
    echo "$2" >"$stamp"
  fi
}

# apt_install WHY ARGS...: `apt-get update`, then `apt-get install -y ARGS...` (Debian
# packages the tests need and this machine lacks), saying first what it installs and
# why, with apt-get's own output shown. It needs root, as on CI; anyone else gets the
# command to run themselves (README "What the test command installs").
apt_install() {
  local why=$1
  shift
  step "installing Debian packages for $why: apt-get update && apt-get install -y $*"
  if [ "$(id -u)" -ne 0 ]; then
    echo "apt-get needs root: install them with  sudo apt-get install $*  and run again" >&2
    return 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# npm_tools: installs buf (and any other npm tool in package.json) into node_modules.
npm_tools() {
  if [ ! -x node_modules/.bin/buf ]; then
    step "installing buf from npm"
    npm ci --no-audit --no-fund >/dev/null
  fi
}

# free_port: prints a TCP port that is free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Background processes to stop when the script exits.
CLEANUP_PIDS=()
CLEANUP_DIRS=()
cleanup() {
  for pid in "${CLEANUP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${CLEANUP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${CLEANUP_DIRS[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT

# wait_for URL SECONDS: polls until URL answers 200, or fails.
wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# start_minio: starts MinIO on 127.0.0.1 with a fresh folder, creates a bucket, and
# exports the AWS_* variables that courier (object_store) reads, plus
# COURIER_TEST_S3_BUCKET for the tests.
start_minio() {
  go_tool minio "$MINIO_MODULE"
  local dir port console
  dir=$(mktemp -d)
  port=$(free_port)
  console=$(free_port)
  CLEANUP_DIRS+=("$dir")
  export AWS_ACCESS_KEY_ID=courier-test
  export AWS_SECRET_ACCESS_KEY=courier-test-secret
  export AWS_REGION=us-east-1
  export AWS_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ALLOW_HTTP=true
  MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    minio server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$console" \
    "$dir/data" >"$dir/minio.log" 2>&1 &
  CLEANUP_PIDS+=($!)
  wait_for "$AWS_ENDPOINT/minio/health/live" 60 || { cat "$dir/minio.log" >&2; return 1; }
  export COURIER_TEST_S3_BUCKET=courier-test
  curl -fsS -X PUT --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$AWS_ENDPOINT/$COURIER_TEST_S3_BUCKET"
  echo "MinIO is serving $AWS_ENDPOINT (bucket $COURIER_TEST_S3_BUCKET)" >&2
}

# start_toxiproxy: starts Toxiproxy (built once with go install into its own folder,
# since its binary is named `server`) on 127.0.0.1 and exports its API address in
# COURIER_TEST_TOXIPROXY for the fault drills (tests/drills.rs); their proxies listen
# on 127.0.0.1 too.
start_toxiproxy() {
  local bin="$TOOLS_DIR/toxiproxy" dir port
  # Its binary is named `server`: a folder of its own.
  go_tool server "$TOXIPROXY_MODULE" "$bin"
  dir=$(mktemp -d)
  port=$(free_port)
  CLEANUP_DIRS+=("$dir")
  "$bin/server" -host 127.0.0.1 -port "$port" >"$dir/toxiproxy.log" 2>&1 &
  CLEANUP_PIDS+=($!)
  wait_for "http://127.0.0.1:$port/version" 30 || { cat "$dir/toxiproxy.log" >&2; return 1; }
  export COURIER_TEST_TOXIPROXY="127.0.0.1:$port"
  echo "Toxiproxy is serving its API on $COURIER_TEST_TOXIPROXY" >&2
}

# tools_venv: a Python virtualenv in $TOOLS_DIR with the pinned tools of
# scripts/requirements-tools.txt (grpcio-tools for protoc and the Python plugins,
# mypy-protobuf, mypy, pytest); made once and remade when that file changes. Puts its
# bin folder first on PATH and exports TOOLS_PYTHON.
tools_venv() {
  local req=scripts/requirements-tools.txt stamp venv
  venv="$TOOLS_DIR/venv"
  stamp="$venv/.requirements-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    step "installing the Python tools of $req into $venv (once; cached)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
  export TOOLS_PYTHON="$venv/bin/python"
}

# nats_server_binary: builds nats-server (once, cached) and exports its path as
# COURIER_NATS_SERVER, for the client suites' three-replica scenario.
nats_server_binary() {
  go_tool nats-server "$NATS_MODULE"
  export COURIER_NATS_SERVER="$GOBIN/nats-server"
}

# server_binary: builds courier-server (debug) unless COURIER_SERVER_BIN names one, and
# exports COURIER_SERVER_BIN for the client test suites and the interop matrix.
server_binary() {
  if [ -z "${COURIER_SERVER_BIN:-}" ]; then
    cargo build --locked -q -p courier-server
    export COURIER_SERVER_BIN="$PWD/target/debug/courier-server"
  fi
}
