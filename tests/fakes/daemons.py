"""Real daemon processes for end-to-end tests: started, awaited, killed.

The test's own event loop keeps running while a daemon runs (subprocesses are
asyncio subprocesses), so fake upstreams served from the test process answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from common.mirror.samplestream import SampleStream
from tests.fakes.upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    """One daemon (``python -m <module> ...``) with its log captured to a file."""

    module: str
    args: list[str]
    log_path: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, ready_path: str = "/healthz", timeout: float = 30) -> None:
        """Start the process and wait until ``ready_path`` answers 200."""
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                *self.args,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONPATH": str(REPO), **self.env},
                cwd=REPO,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"{self.module} exited {self.proc.returncode}:\n" + self.log_text()[-3000:]
                    )
                try:
                    async with session.get(self.url + ready_path) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(
            f"{self.module} not ready after {timeout} s:\n" + self.log_text()[-3000:]
        )

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout``)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def again(self) -> DaemonProcess:
        """The same daemon (arguments, log, port), not started: start it to restart this one."""
        return DaemonProcess(self.module, self.args, self.log_path, self.port, dict(self.env))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log events called ``name`` that the daemon has written so far."""
        import json  # noqa: PLC0415

        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    async def wait_for_event(
        self,
        name: str,
        *,
        count: int = 1,
        timeout: float = 60,
    ) -> list[dict[str, Any]]:
        """Wait until the log holds ``count`` events called ``name``; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise TimeoutError(
            f"no {count}× {name} in the log of {self.module}:\n" + self.log_text()[-3000:]
        )


def region_daemon(
    work: Path,
    data_dir: Path,
    *,
    upstream: FakeUpstream | None = None,
    stream: SampleStream | None = None,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """``bootsync-regiond`` on a free port (not started), logging JSON to ``work/regiond.log``.

    Its default boot source is ``upstream`` verified with ``stream``'s keyring; without
    them it creates no source.
    """
    config = work / "regiond.toml"
    if upstream is None or stream is None:
        imports = "create_default_source = false\n"
    else:
        imports = (
            f'default_source_url = "{upstream.url("/")}"\ndefault_keyring = "{stream.keyring}"\n'
        )
    config.write_text(f'[import]\n{imports}[log]\nformat = "json"\n')
    port = free_port()
    return DaemonProcess(
        "region",
        ["--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
        log_path=work / "regiond.log",
        port=port,
        env=dict(env or {}),
    )


async def bootsync(*args: str) -> str:
    """Run the ``bootsync`` CLI with ``args``; its stdout, stripped (fails unless it exits 0)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        "--log-level",
        "warning",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def admin_key(data_dir: Path) -> str:
    """A fresh admin API key, ``consumer:token:secret``, from ``bootsync apikey``."""
    return await bootsync("apikey", "--username", "admin", "--admin", "--data-dir", str(data_dir))


def oauth(key: str) -> dict[str, str]:
    """The PLAINTEXT OAuth header the maas CLI sends for ``key`` (``consumer:token:secret``)."""
    consumer, token, secret = key.split(":")
    return {
        "Authorization": (
            f'OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
            f'oauth_consumer_key="{consumer}", oauth_token="{token}", '
            f'oauth_signature="%26{secret}", oauth_nonce="1", oauth_timestamp="1"'
        )
    }
