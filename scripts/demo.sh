#!/usr/bin/env bash
# The main job on a machine with no upstream: a region importing the bundled sample
# stream served on loopback, driven through its MAAS-compatible API.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${DEMO_DIR:-demo-data}
rm -rf "$work"
mkdir -p "$work"
data=$(mktemp -d /tmp/bootsync-demo-XXXXXX)   # short path: gpg-agent's socket lives there
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== 1. writing the sample stream (signed, shaped like images.maas.io) to $work/upstream"
bootsync --log-level warning sample-stream "$work/upstream" --file-size "${DEMO_FILE_SIZE:-4M}"

up=$(free_port)
echo "== 2. serving it on http://127.0.0.1:$up/ (stands in for images.maas.io)"
python3 -m http.server "$up" --bind 127.0.0.1 --directory "$work/upstream" >"$work/upstream.log" 2>&1 &
pids+=($!)

port=$(free_port)
cat >"$work/regiond.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
data_dir = "$data"
[import]
default_source_url = "http://127.0.0.1:$up/"
default_keyring = "$PWD/$work/upstream/sample-keyring.gpg"
[log]
format = "json"
TOML
echo "== 3. starting bootsync-regiond on 127.0.0.1:$port (log: $work/regiond.log)"
bootsync-regiond --config "$work/regiond.toml" >"$work/regiond.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

key=$(bootsync --log-level warning apikey --username admin --admin --data-dir "$data")
IFS=: read -r ck tk ts <<<"$key"
auth="Authorization: OAuth oauth_version=\"1.0\", oauth_signature_method=\"PLAINTEXT\", oauth_consumer_key=\"$ck\", oauth_token=\"$tk\", oauth_signature=\"%26$ts\""
api() { curl -sf -H "$auth" "$@"; }
base="http://127.0.0.1:$port/MAAS/api/2.0"
echo "== 4. admin API key made; the default source and selection (ubuntu noble) were created at start"
api "$base/boot-sources/" | python3 -m json.tool

echo "== 5. POST boot-resources/?op=import (the start-up import may still be running)"
api -X POST "$base/boot-resources/?op=import"; echo
for _ in $(seq 300); do [ "$(api "$base/boot-resources/?op=is_importing")" = "false" ] && break; sleep 0.2; done

echo "== 6. boot-resources read"
api "$base/boot-resources/" | python3 -c '
import json, sys
rows = json.load(sys.stdin)
line = "{:>3}  {:<8} {:<28} {:<22} {}"
print(line.format("id", "type", "name", "architecture", "status"))
for r in rows:
    print(line.format(r["id"], r["type"], r["name"], r["architecture"], r.get("status", "")))
'
echo "== 7. the region publishes its own signed stream for racks:"
curl -sf "http://127.0.0.1:$port/MAAS/images-stream/streams/v1/index.json" | python3 -m json.tool | head -20
echo "== import summary (last log line of the import):"
grep '"import_finished"' "$work/regiond.log" | tail -1
