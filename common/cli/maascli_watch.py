"""``boot-resources import --watch`` and ``boot-resources watch``: follow an import.

Polls ``is_importing`` and the image list until the import ends. An image whose
list entry does not say it is complete (bootsync's ``status``; MAAS has none)
is read in full to get its newest set's size and progress. On a terminal each
image gets a redrawn progress bar; elsewhere a plain line is printed when an
image's state changes or its progress passes another 10 %. Exit code: 0 when
every image is complete at the end, 1 if some are not, 2 on an API error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from common.cli.maascli_aio import AsyncApiClient
from common.cli.maascli_commands import Invocation
from common.cli.maascli_http import API_ERROR_EXIT, ApiResponse, print_response

POLL_SECONDS = 1.0
_BAR_WIDTH = 24
_MIB = 1 << 20
_PENDING = ("Queued", "Downloading")


class _CallFailed(Exception):
    def __init__(self, response: ApiResponse) -> None:
        self.response = response
        super().__init__(response.status)


@dataclass(frozen=True)
class ImageState:
    """Where one image stands in the region."""

    label: str  # ``ubuntu/noble amd64/ga-24.04``
    complete: bool
    size: int
    percent: float
    status: str

    @property
    def step(self) -> tuple[bool, int]:
        """What a plain-line view reports a change of: completion, and 10 % steps."""
        return self.complete, int(self.percent // 10)


async def watch_import(
    client: AsyncApiClient,
    invocation: Invocation,
    *,
    out: TextIO,
    err: TextIO,
    start: bool,
    interval: float = POLL_SECONDS,
) -> int:
    """Optionally start an import, then show progress until it ends; the exit code."""
    base = client.handler_url(invocation)
    try:
        if start:
            started = await client.request("POST", base, op="import")
            if not started.ok:
                return print_response(started, out=out, err=err)
            print(started.body.decode("utf-8", errors="replace").strip(), file=out, flush=True)
        view = ImportView(out)
        while True:
            importing = await _get_json(client, base, op="is_importing") is True
            images = await image_states(client, base)
            view.show(images)
            if not importing:
                break
            await asyncio.sleep(interval)
    except _CallFailed as exc:
        return print_response(exc.response, out=out, err=err)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"unexpected answer while watching the import: {exc!r}", file=err)
        return API_ERROR_EXIT
    return view.finish(images)


async def _get_json(client: AsyncApiClient, url: str, *, op: str | None = None) -> Any:
    response = await client.request("GET", url, op=op)
    if not response.ok:
        raise _CallFailed(response)
    return response.json()


async def image_states(client: AsyncApiClient, base: str) -> list[ImageState]:
    """Every image's state; incomplete (or status-less) ones are read in full."""
    states = []
    for entry in await _get_json(client, base):
        label = f"{entry.get('name', '?')} {entry.get('architecture', '?')}"
        status = entry.get("status")
        if isinstance(status, str) and not status.startswith(_PENDING):
            states.append(ImageState(label, complete=True, size=0, percent=100.0, status=status))
            continue
        detail = await _get_json(client, client.url_for(entry["resource_uri"]))
        states.append(_from_detail(label, detail, status))
    return states


def _from_detail(label: str, detail: Any, status: str | None) -> ImageState:
    sets = detail.get("sets") or {}
    if not sets:
        return ImageState(
            label, complete=False, size=0, percent=0.0, status=status or "Queued for download"
        )
    newest = sets[max(sets)]
    complete = bool(newest.get("complete"))
    percent = 100.0 if complete else float(newest.get("progress") or 0.0)
    text = status or ("Synced" if complete else f"Downloading {percent:3.0f}%")
    return ImageState(
        label, complete=complete, size=int(newest.get("size") or 0), percent=percent, status=text
    )


class ImportView:
    """Progress bars redrawn in place on a terminal, change lines elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._drawn = 0
        self._reported: dict[str, tuple[bool, int]] = {}

    def show(self, images: Sequence[ImageState]) -> None:
        """Draw the current state."""
        if self._tty:
            self._redraw(images)
            return
        for image in images:
            if self._reported.get(image.label) != image.step:
                self._reported[image.label] = image.step
                print(f"{image.label}: {image.status}", file=self._out, flush=True)

    def _redraw(self, images: Sequence[ImageState]) -> None:
        width = max((len(i.label) for i in images), default=0)
        lines = [self._bar(image, width) for image in images] or ["(no images selected)"]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._out.flush()
        self._drawn = len(lines)

    @staticmethod
    def _bar(image: ImageState, width: int) -> str:
        filled = int(_BAR_WIDTH * min(image.percent, 100.0) / 100)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        size = (
            f" {image.size * image.percent / 100 / _MIB:,.1f}/{image.size / _MIB:,.1f} MiB"
            if image.size
            else ""
        )
        return f"{image.label.ljust(width)} [{bar}] {image.percent:5.1f}%{size}  {image.status}"

    def finish(self, images: Sequence[ImageState]) -> int:
        """Print the summary; 0 if every image is complete, else 1."""
        incomplete = [i.label for i in images if not i.complete]
        line = f"import finished: {len(images) - len(incomplete)} of {len(images)} images complete"
        if incomplete:
            line += "; incomplete: " + ", ".join(incomplete)
        print(line, file=self._out, flush=True)
        return 1 if incomplete else 0
