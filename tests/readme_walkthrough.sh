#!/usr/bin/env bash
# Runs the README's grpcurl walkthroughs exactly as written, against a real server on
# the README's defaults (127.0.0.1:50051, ./data), in a throwaway folder:
#   media  — mint a token, list, health, upload, GetMedia;
#   bob    — a Subscribe left running in the background, as in "one terminal";
#   alice  — a SendPeerMessage from "another terminal", which bob must receive;
#   refusal — a channel send before joining: grpcurl shows the ErrorInfo's reason
#            (the error details are in reflection);
#   http   — GetMediaUrl, then curl of the link: whole, a range, the headers, a 304;
#   quick-bob / quick-alice — the quick start: `courier listen --save inbox` as bob,
#            `courier send --to bob --image cat.png` as alice; the picture must land;
#   admin  — "Deleting media": `courier-server media list|quarantine|release` on ./data
#            beside the running server, and `courier delete`;
#   hook-server / hook-client — "Upload hook": the example scanner as the hook of a
#            second server; a clean upload kept, the EICAR file refused;
#   tls-server / tls-client — the Security section: `tls-dev` makes a CA, a server
#            serves TLS with it, the CLI and grpcurl call it over TLS.
# The one substitution: release binaries (`cargo run -q --release --`,
# `target/release`) become the debug ones the tests just built — the same programs
# without a second, release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBUG="$PWD/target/debug"
BIN="$DEBUG/courier-server"
README="$PWD/README.md"
work=$(mktemp -d)
pids=()
groups=()
cleanup() {
  # Background walkthrough blocks run in their own process groups: kill the whole
  # group, so that `courier listen` or grpcurl started inside them go too.
  for g in "${groups[@]}"; do kill -- -"$g" 2>/dev/null || true; done
  for p in "${pids[@]}" "${groups[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# block NAME: the shell commands of the README's block NAME.
block() {
  local text
  text=$(sed -n "/<!-- walkthrough $1 -->/,/<!-- \/walkthrough $1 -->/p" "$README" \
    | sed -e '/^<!--/d' -e '/^```/d' -e "s#cargo run -q --release --#$BIN#g" \
      -e "s#\$PWD/target/release#$DEBUG#g")
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
# run_bg BLOCK FILE: runs a block in the background, in a process group of its own.
run_bg() {
  setsid env -u COURIER_JWT_SECRET bash -euo pipefail -c "$1" >"$2" 2>&1 &
  groups+=($!)
}

run "$(block media)" >media.txt 2>&1 || { cat media.txt >&2; exit 1; }
expect media.txt courier.v1.MediaService courier.v1.MessagingService '"status": "SERVING"' \
  '"fileName": "hello.txt"' '"size": "6"' '"kind": "MEDIA_KIND_FILE"'
[ "$(grep -c '"fileName": "hello.txt"' media.txt)" -eq 2 ] || { echo "upload and GetMedia should both show the record" >&2; exit 1; }

run_bg "$(block bob)" bob.txt
wait_for_text bob.txt '"ready"'
run "$(block alice)" >alice.txt 2>&1 || { cat alice.txt >&2; exit 1; }
expect alice.txt PEER_MESSAGE_STATE_DELIVERED '"messageId"'
wait_for_text bob.txt '"text": "hi bob"'
expect bob.txt '"senderId": "alice"'
# grpcurl exits non-zero on the refusal: the block is expected to fail, saying why.
if run "$(block refusal)" >refusal.txt 2>&1; then
  echo "the channel send before joining was not refused" >&2; exit 1
fi
expect refusal.txt 'Code: FailedPrecondition' '"@type": "type.googleapis.com/google.rpc.ErrorInfo"' \
  '"reason": "NOT_A_MEMBER"'

# Media over HTTP: a link from GetMediaUrl, fetched with curl whole, by range, and
# conditionally.
run "$(block http)" >http.txt 2>&1 || { cat http.txt >&2; exit 1; }
expect http.txt '"url": "http://127.0.0.1:50051/media/v1/' '"expireTime"' hello hell \
  'HTTP/1.1 200 OK' 'accept-ranges: bytes' 'x-content-type-options: nosniff' \
  'content-disposition: attachment; filename="hello.txt"'
[ "$(tail -n 1 http.txt)" = 304 ] || { echo "the conditional GET should answer 304" >&2; cat http.txt >&2; exit 1; }
[ "$(grep -c '^hello$' http.txt)" -eq 1 ] && grep -q '^hell$' http.txt \
  || { echo "the whole file and its first 4 bytes should both show" >&2; cat http.txt >&2; exit 1; }

# The quick start: a real PNG as cat.png, bob listening, alice sending.
python3 - <<'PY'
import struct, zlib
w, h = 64, 48
raw = b"".join(b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128)) for x in range(w)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open("cat.png", "wb").write(png)
PY
run_bg "$(block quick-bob)" quick-bob.txt
wait_for_text quick-bob.txt 'listening'
run "$(block quick-alice)" >quick-alice.txt 2>&1 || { cat quick-alice.txt >&2; exit 1; }
expect quick-alice.txt delivered
wait_for_text quick-bob.txt 'saved cat.png to inbox/cat.png'
expect quick-bob.txt 'alice: [image cat.png 64x48'
cmp cat.png inbox/cat.png || { echo "bob's inbox/cat.png differs from alice's cat.png" >&2; exit 1; }

# Deleting media: the admin commands on ./data while the server runs.
run "$(block admin)" >admin.txt 2>&1 || { cat admin.txt >&2; exit 1; }
expect admin.txt '"owner":"alice"' '"quarantined":true' 'media quarantined' \
  'refused while quarantined' '"quarantined":false' 'saved note.txt' 'deleted ' \
  'media deleted' 'refused once deleted' '"action":"quarantined"'
cmp note.txt copy.txt || { echo "the released download differs" >&2; exit 1; }

# Security: a throwaway CA, a TLS server, the CLI and grpcurl over TLS with that CA.
# The upload hook: the example scanner as the hook of a second server. The EICAR file
# is put together here, so that no file of the repository holds it.
ln -s "$(dirname "$README")/examples" examples
printf '%s%s%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-' 'ANTIVIRUS-TEST-' 'FILE!$H+H*' > eicar.com
run_bg "$(block hook-server)" hook-server.txt
wait_for_text hook-server.txt 'scanner listening'
wait_for_text hook-server.txt 'courier-server listening'
run "$(block hook-client)" >hook-client.txt 2>&1 || { cat hook-server.txt hook-client.txt >&2; exit 1; }
expect hook-client.txt 'media rejected: this file is the EICAR' 'refused by the scanner' '"file_name":"clean.txt"'
! grep -q '"file_name":"eicar.com"' hook-client.txt || { echo "the EICAR upload was kept" >&2; exit 1; }

run_bg "$(block tls-server)" tls-server.txt
wait_for_text tls-server.txt 'courier-server listening'
run "$(block tls-client)" >tls-client.txt 2>&1 || { cat tls-server.txt tls-client.txt >&2; exit 1; }
expect tls-client.txt alice '"status": "SERVING"'
expect tls-server.txt '"tls":true'

cat media.txt alice.txt bob.txt refusal.txt http.txt quick-bob.txt admin.txt hook-client.txt tls-client.txt
echo "README walkthrough: 12 passed, 0 failed"
