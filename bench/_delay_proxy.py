"""A TCP proxy on 127.0.0.1 that adds a fixed delay per connection and per HTTP request.

Used by bench/wan_bench.py to give a loopback upstream a WAN's round trips:
each new connection waits ``--delay`` before it is connected upstream (the
handshake), and each chunk from the client that begins an HTTP request
(``GET``/``HEAD``) waits ``--delay`` before it is forwarded (the request's
round trip). Bytes are forwarded unchanged in both directions: requests by
plain reads and writes, responses with ``os.splice`` through a pipe (no copy
through this process), so the proxy's own CPU stays small beside what it
measures. One thread per direction per connection. Usage:

    python bench/_delay_proxy.py --port LISTEN --upstream PORT --delay 0.05

It prints ``listening`` once ready and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading
import time

_METHODS = (b"GET ", b"HEAD ")
_SPLICE = 1 << 20


def _requests(client: socket.socket, upstream: socket.socket, delay: float) -> None:
    """Client → upstream: delay each chunk that starts a request."""
    with contextlib.suppress(OSError):
        while data := client.recv(1 << 16):
            if data.startswith(_METHODS):
                time.sleep(delay)
            upstream.sendall(data)
    with contextlib.suppress(OSError):
        upstream.shutdown(socket.SHUT_WR)


def _responses(upstream: socket.socket, client: socket.socket) -> None:
    """Upstream → client through a pipe with splice (zero copy)."""
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):
            while True:
                moved = os.splice(upstream.fileno(), write_end, _SPLICE)
                if moved == 0:
                    break
                while moved:
                    moved -= os.splice(read_end, client.fileno(), moved)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
    finally:
        os.close(read_end)
        os.close(write_end)


def _handle(client: socket.socket, upstream_port: int, delay: float) -> None:
    time.sleep(delay)
    try:
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        return
    up = threading.Thread(target=_requests, args=(client, upstream, delay), daemon=True)
    up.start()
    _responses(upstream, client)
    up.join()
    client.close()
    upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = socket.create_server(("127.0.0.1", args.port))
    print("listening", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            client, _addr = server.accept()
            threading.Thread(
                target=_handle, args=(client, args.upstream, args.delay), daemon=True
            ).start()


if __name__ == "__main__":
    main()
