"""A TCP proxy on 127.0.0.1 that adds a fixed delay per connection and per HTTP request.

Used by bench/wan_bench.py to give a loopback upstream a WAN's round trips:
each new connection waits ``--delay`` before it is connected upstream (the
handshake), and each chunk from the client that begins an HTTP request
(``GET``/``HEAD``) waits ``--delay`` before it is forwarded (the request's
round trip). Bytes are forwarded unchanged in both directions. Usage:

    python bench/_delay_proxy.py --port LISTEN --upstream PORT --delay 0.05

It prints ``listening`` once ready and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

_METHODS = (b"GET ", b"HEAD ")


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, requests: bool
) -> None:
    try:
        while data := await reader.read(1 << 20):
            if requests and data.startswith(_METHODS):
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


async def _serve(port: int, upstream: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pump(reader, up_writer, delay, requests=True),
            _pump(up_reader, writer, delay, requests=False),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    args = parser.parse_args()
    try:  # the proxy's own CPU per byte should not be what the benchmark measures
        import uvloop  # noqa: PLC0415

        uvloop.run(_serve(args.port, args.upstream, args.delay))
    except ImportError:
        asyncio.run(_serve(args.port, args.upstream, args.delay))


if __name__ == "__main__":
    main()
