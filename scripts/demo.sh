#!/usr/bin/env bash
# The main job on a machine with no upstream, all on loopback: the bundled sample
# stream stands in for images.maas.io; a region imports it through its MAAS API; two
# racks register with the region and sync; a status table ends the run. Ctrl-C at any
# point stops every daemon cleanly. DEMO_HOLD=1 keeps them running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${DEMO_DIR:-demo-data}
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)   # absolute: the region's config names files in it
data=$(mktemp -d /tmp/bootsync-demo-XXXXXX)   # short path: gpg-agent's socket lives there
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
trap 'echo; echo "== interrupted: stopping the daemons"; exit 130' INT TERM
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
default_keyring = "$work/upstream/sample-keyring.gpg"
[log]
format = "json"
TOML
echo "== 3. starting bootsync-regiond on 127.0.0.1:$port (log: $work/regiond.log)"
bootsync-regiond --config "$work/regiond.toml" >"$work/regiond.log" 2>&1 &
pids+=($!)
healthy() { curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; }
for _ in $(seq 100); do healthy && break; sleep 0.2; done
if ! healthy; then
    echo "== the region did not start; the end of $work/regiond.log:" >&2
    tail -20 "$work/regiond.log" >&2
    exit 1
fi

key=$(bootsync --log-level warning apikey --username admin --admin --data-dir "$data")
ui_password=${DEMO_PASSWORD:-bootsync-demo}
bootsync --log-level warning createadmin --username admin --password "$ui_password" --data-dir "$data" >/dev/null
ui_url="http://127.0.0.1:$port/MAAS/r/images"
echo "== the Images page: $ui_url (log in as admin / $ui_password)"
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
echo "== 7. the region publishes its own signed stream for racks; its index lists:"
curl -sf "http://127.0.0.1:$port/MAAS/images-stream/streams/v1/index.json" | python3 -c '
import json, sys
for cid, entry in json.load(sys.stdin)["index"].items():
    print(cid, entry["path"])
    for product in entry["products"]:
        print("   ", product)'

secret_file="$data/rack-secret"
for name in rack-a rack-b; do
    rport=$(free_port)
    mkdir -p "$data/$name"
    printf '[server]\nhostname = "%s"\n[log]\nformat = "json"\n' "$name" >"$work/$name.toml"
    echo "== 8. starting bootsync-rackd $name on 127.0.0.1:$rport (log: $work/$name.log)"
    bootsync-rackd --config "$work/$name.toml" --region "http://127.0.0.1:$port" \
        --secret-file "$secret_file" --listen "127.0.0.1:$rport" --data-dir "$data/$name" \
        >"$work/$name.log" 2>&1 &
    pids+=($!)
    eval "port_$(echo "$name" | tr - _)=$rport"
done

echo "== 9. waiting for both racks to sync from the region"
synced() {
    api "$base/rackcontrollers/" | python3 -c '
import json, sys
racks = json.load(sys.stdin)
sys.exit(0 if len(racks) == 2 and all(r["bootsync"]["state"] == "synced" for r in racks) else 1)'
}
for _ in $(seq 300); do synced && break; sleep 0.2; done
synced || echo "== the racks have not both synced after 60 s; see $work/rack-*.log" >&2

echo "== 10. status"
echo "-- rack controllers"
for id in $(api "$base/rackcontrollers/" | python3 -c 'import json,sys; print(" ".join(r["system_id"] for r in json.load(sys.stdin)))'); do
    host=$(api "$base/rackcontrollers/$id/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hostname"])')
    api "$base/rackcontrollers/$id/?op=list_boot_images" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("{:<8} {:<8} {:<10} connected={} images={}".format(sys.argv[1], sys.argv[2], d["status"], d["connected"], len(d["images"])))' "$id" "$host"
done
echo "-- boot resources"
api "$base/boot-resources/" | python3 -c '
import json, sys
line = "{:>3}  {:<28} {:<18} {}"
for r in json.load(sys.stdin):
    print(line.format(r["id"], r["name"], r["architecture"], r.get("status", "")))
'
echo "-- a booting machine fetches its kernel from rack-a:"
curl -sfI "http://127.0.0.1:$port_rack_a/images/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel" | grep -iE '^(HTTP|content-length|etag)'
echo "-- the import's summary event:"
grep '"import_finished"' "$work/regiond.log" | tail -1
echo "-- each rack's last pull:"
for name in rack-a rack-b; do grep '"pull_finished"' "$work/$name.log" | tail -1; done
echo "== the Images page: $ui_url  login: admin / $ui_password (DEMO_HOLD=1 keeps it up)"
if [ "${DEMO_HOLD:-0}" = 1 ]; then
    echo "== running; press Ctrl-C to stop"
    while true; do sleep 1; done
fi
echo "== done: stopping the daemons"
