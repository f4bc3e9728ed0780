#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough exactly as written, against a real server on
# the README's defaults (127.0.0.1:50051, ./data), in a throwaway folder. The one
# substitution: `cargo run -q --release --` becomes the binary the tests just built,
# which is the same program without a second (release) build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/debug/courier-server"
README="$PWD/README.md"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

script=$(sed -n '/<!-- walkthrough -->/,/<!-- \/walkthrough -->/p' "$README" \
  | sed -e '/^<!--/d' -e '/^```/d' \
  | sed -e "s#cargo run -q --release --#$BIN#g")
[ -n "$script" ] || { echo "README has no walkthrough block" >&2; exit 1; }

cd "$work"
env -u COURIER_JWT_SECRET -u COURIER_DATA_DIR -u COURIER_LISTEN "$BIN" >server.log 2>&1 &
server=$!
for _ in $(seq 100); do
  grep -q 'courier-server listening' server.log 2>/dev/null && break
  sleep 0.1
done
grep -q 'courier-server listening' server.log || { cat server.log >&2; exit 1; }

env -u COURIER_JWT_SECRET bash -euo pipefail -x -c "$script" >out.txt 2>err.txt || {
  cat out.txt err.txt >&2
  exit 1
}
cat out.txt
for expected in courier.v1.MediaService courier.v1.MessagingService '"status": "SERVING"' \
  '"fileName": "hello.txt"' '"size": "6"' '"kind": "MEDIA_KIND_FILE"'; do
  grep -qF "$expected" out.txt || { echo "walkthrough output lacks $expected" >&2; exit 1; }
done
[ "$(grep -c '"fileName": "hello.txt"' out.txt)" -eq 2 ] || { echo "upload and GetMedia should both show the record" >&2; exit 1; }
echo "README walkthrough: 1 passed, 0 failed"
