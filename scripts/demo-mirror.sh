#!/usr/bin/env bash
# The main job on a machine with no upstream: write the bundled sample stream,
# serve it on loopback, and make a verified, signed local mirror of it with
# `bootsync mirror` (twice: the second run is incremental and downloads nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

work=${DEMO_DIR:-demo-data}
rm -rf "$work"
mkdir -p "$work"
export XDG_DATA_HOME="$PWD/$work/xdg"   # the mirror's signing key lives here, not in the mirror

echo "== 1. writing the sample stream (signed, MAAS-shaped) to $work/upstream"
bootsync --log-format console sample-stream "$work/upstream" --file-size "${DEMO_FILE_SIZE:-2M}"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "== 2. serving it on http://127.0.0.1:$port/"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/upstream" >"$work/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/streams/v1/index.sjson" >/dev/null && break; sleep 0.1; done

# Filters are sstream-mirror's: every filter must match, and a missing field counts as "".
# Bootloader products have no `release`, so `release~^(noble)?$` keeps noble and bootloaders.
filters=('arch~^(amd64|i386)$' 'release~^(noble)?$')
echo "== 3. bootsync mirror (noble amd64, newest version only, plus the amd64/i386 bootloaders)"
bootsync --log-format console mirror "http://127.0.0.1:$port/" "$work/mirror" \
    --keyring "$work/upstream/sample-keyring.gpg" --max 1 --concurrency 8 \
    "${filters[@]}"

echo "== 4. again: incremental, nothing is downloaded"
bootsync --log-format console mirror "http://127.0.0.1:$port/" "$work/mirror" \
    --keyring "$work/upstream/sample-keyring.gpg" --max 1 --concurrency 8 \
    "${filters[@]}"

echo "== 5. what the mirror holds (its own signed metadata lists exactly these files)"
find "$work/mirror" -path "$work/mirror/.bootsync" -prune -o -type f -print | sort
