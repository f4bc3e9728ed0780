#!/usr/bin/env bash
# Runs the README's grpcurl walkthroughs exactly as written, against a real server on
# the README's defaults (127.0.0.1:50051, ./data), in a throwaway folder:
#   media  — mint a token, list, health, upload, GetMedia;
#   bob    — a Subscribe left running in the background, as in "one terminal";
#   alice  — a SendPeerMessage from "another terminal", which bob must receive.
# The one substitution: `cargo run -q --release --` becomes the binary the tests just
# built, which is the same program without a second (release) build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/debug/courier-server"
README="$PWD/README.md"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# block NAME: the shell commands of the README's block NAME.
block() {
  local text
  text=$(sed -n "/<!-- walkthrough $1 -->/,/<!-- \/walkthrough $1 -->/p" "$README" \
    | sed -e '/^<!--/d' -e '/^```/d' -e "s#cargo run -q --release --#$BIN#g")
  [ -n "$text" ] || { echo "README has no walkthrough block '$1'" >&2; exit 1; }
  printf '%s\n' "$text"
}

# wait_for_text FILE TEXT: waits up to 10 s for TEXT to appear in FILE.
wait_for_text() {
  for _ in $(seq 100); do
    grep -qF "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  exit 1
}

# expect FILE TEXT...: each TEXT must be in FILE.
expect() {
  local file=$1
  shift
  for text in "$@"; do
    grep -qF "$text" "$file" || { echo "$file lacks $text:" >&2; cat "$file" >&2; exit 1; }
  done
}

cd "$work"
env -u COURIER_JWT_SECRET -u COURIER_DATA_DIR -u COURIER_LISTEN "$BIN" >server.log 2>&1 &
pids+=($!)
wait_for_text server.log 'courier-server listening'
run() { env -u COURIER_JWT_SECRET bash -euo pipefail -c "$1"; }

run "$(block media)" >media.txt 2>&1 || { cat media.txt >&2; exit 1; }
expect media.txt courier.v1.MediaService courier.v1.MessagingService '"status": "SERVING"' \
  '"fileName": "hello.txt"' '"size": "6"' '"kind": "MEDIA_KIND_FILE"'
[ "$(grep -c '"fileName": "hello.txt"' media.txt)" -eq 2 ] || { echo "upload and GetMedia should both show the record" >&2; exit 1; }

run "$(block bob)" >bob.txt 2>&1 &
pids+=($!)
wait_for_text bob.txt '"ready"'
run "$(block alice)" >alice.txt 2>&1 || { cat alice.txt >&2; exit 1; }
expect alice.txt PEER_MESSAGE_STATE_DELIVERED '"messageId"'
wait_for_text bob.txt '"text": "hi bob"'
expect bob.txt '"senderId": "alice"'

cat media.txt alice.txt bob.txt
echo "README walkthrough: 3 passed, 0 failed"
