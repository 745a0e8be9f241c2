"""Static boot configuration: an operator's templates, rendered per request.

``[boot] templates_dir`` names a directory of boot configuration files the rack
serves over TFTP and under ``/images/`` beside the images, at the same relative
path: ``grub/grub.cfg`` (UEFI grub), ``pxelinux.cfg/default`` (BIOS pxelinux),
``boot.ipxe`` (iPXE). etc/boot/ ships working examples. A template wins over a
snapshot file of the same path. Hidden files and names that lead out of the
directory are never served; templates are not listed in ``/images/`` listings.

Each request renders its template against the snapshot it is served from (the
one ``current`` pointed at when the request arrived, as for any other file), so
the image paths always name files of that snapshot. Rendering is plain
substitution, no code: ``{{ name }}`` (spaces optional) is replaced by the value
of ``name``; text without ``{{`` is copied as it is. The variables:

``rack_url``
    The rack's HTTP base URL as the client reached it: over HTTP the request's
    own scheme and ``Host``; over TFTP ``http://<the address the request came
    in on>:<server.listen port>`` when the HTTP server listens on every address.
    ``server.advertise_url`` when the rack has one; the configured URL (the
    listen address) when HTTP listens on one address (over TFTP) or the
    ``Host`` header is not a plain host name (over HTTP).
``rack_host``
    The host part of ``rack_url`` (IPv6 in brackets): the TFTP server for
    bootloaders that take a server name.
``images_url``
    ``rack_url`` + ``/images``: where every snapshot file is over HTTP.
``ubuntu.newest.<arch>.kernel`` / ``.initrd`` / ``.squashfs``
    The path, relative to the snapshot root (so also to ``images_url`` and to
    the TFTP root), of the newest Ubuntu ephemeral image's ``boot-kernel``,
    ``boot-initrd`` and ``squashfs`` for ``<arch>`` (``amd64``, ``arm64``, ...).
    Newest: the highest release version (``24.04`` from ``release_title`` or a
    ``ga-24.04`` subarch); within it the ``generic`` kernel flavour, a ``ga-``
    subarch before others, the ``stable`` label before others.
``ubuntu.newest.<arch>.release`` / ``.subarch`` / ``.label`` / ``.version``
    That image's release codename (``noble``), subarch (``ga-24.04``), label
    (``stable``) and version name (its stream serial, when the snapshot has it).

A name that is not defined, or a ``{{ ... }}`` that is not a name, fails the
whole request: an error event ``boot_config_render_failed`` naming the
variables, a TFTP error or an HTTP 500 naming them, never a half-rendered file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.ops.logging import get_logger

log = get_logger("rack.bootconfig")

MAX_TEMPLATE_BYTES = 256 << 10
META_NAME = "maas.meta"
IMAGE_FILES = {"kernel": "boot-kernel", "initrd": "boot-initrd", "squashfs": "squashfs"}
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VARIABLE = re.compile(r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*")
_VERSION = re.compile(r"(\d+)\.(\d+)")
_PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


class RenderError(Exception):
    """A template that cannot be rendered: the names at fault and why."""

    def __init__(self, template: str, reason: str, names: tuple[str, ...] = ()) -> None:
        shown = f": {', '.join(names)}" if names else ""
        super().__init__(f"boot config {template}: {reason}{shown}")
        self.template = template
        self.reason = reason
        self.names = names


@dataclass(frozen=True)
class BootConfig:
    """Where the templates are and how the rack's URL is told; build it directly in tests."""

    templates_dir: Path | None  # None: no boot configuration served
    rack_url: str  # the configured URL (advertise_url, else the listen address)
    http_port: int  # server.listen's port
    advertised: bool = False  # server.advertise_url is set: always rack_url
    http_wildcard: bool = True  # HTTP listens on every address (0.0.0.0 or ::)

    def url_for_tftp(self, local_host: str) -> str:
        """``rack_url`` for a TFTP request that came in on ``local_host``."""
        if self.advertised or not self.http_wildcard or not local_host:
            return self.rack_url
        host = f"[{local_host}]" if ":" in local_host else local_host
        return f"http://{host}:{self.http_port}"

    def url_for_http(self, scheme: str, host_header: str | None) -> str:
        """``rack_url`` for an HTTP request with ``scheme`` and ``Host`` header."""
        if self.advertised or not host_header or not _PLAIN_HOST.fullmatch(host_header):
            return self.rack_url
        return f"{scheme}://{host_header}"


def render(text: str, variables: Mapping[str, str], *, template: str) -> str:
    """``text`` with every ``{{ name }}`` replaced; RenderError names what is not defined."""
    malformed: list[str] = []
    unknown: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if not _VARIABLE.fullmatch(name):
            malformed.append(match.group(0))
        elif name not in variables and name not in unknown:
            unknown.append(name)
    if malformed:
        raise RenderError(template, "not a variable name", tuple(malformed))
    if unknown:
        raise RenderError(template, "unknown variable", tuple(unknown))
    return _PLACEHOLDER.sub(lambda match: variables[match.group(1).strip()], text)


def rack_variables(rack_url: str) -> dict[str, str]:
    """``rack_url``, ``rack_host`` and ``images_url`` for ``rack_url``."""
    url = rack_url.rstrip("/")
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    if authority.startswith("["):
        host = authority[: authority.index("]") + 1]
    else:
        host = authority.rsplit(":", 1)[0] if ":" in authority else authority
    return {"rack_url": url, "rack_host": host, "images_url": f"{url}/images"}


@dataclass(frozen=True)
class _Candidate:
    rank: tuple[Any, ...]
    path: str  # os/arch/subarch/release/label
    release: str
    subarch: str
    label: str
    node: Mapping[str, Any]


def image_variables(meta: Mapping[str, Any]) -> dict[str, str]:
    """The ``ubuntu.newest.<arch>.*`` variables of a snapshot's ``maas.meta`` mapping."""
    found: dict[str, str] = {}
    for arch, subarches in _children(meta.get("ubuntu")):
        best = max(_candidates(arch, subarches), key=lambda c: c.rank, default=None)
        if best is None:
            continue
        prefix = f"ubuntu.newest.{arch}"
        files = best.node.get("files", {})
        for key, file_name in IMAGE_FILES.items():
            if file_name in files:
                found[f"{prefix}.{key}"] = f"{best.path}/{file_name}"
        found[f"{prefix}.release"] = best.release
        found[f"{prefix}.subarch"] = best.subarch
        found[f"{prefix}.label"] = best.label
        if isinstance(version := best.node.get("version_name"), str):
            found[f"{prefix}.version"] = version
    return found


def _candidates(arch: str, subarches: Mapping[str, Any]) -> list[_Candidate]:
    """Every bootable (kernel and initrd) Ubuntu image of ``arch``, with its rank."""
    found = []
    for subarch, kflavors in _children(subarches):
        for kflavor, releases in _children(kflavors):
            for release, labels in _children(releases):
                for label, node in _children(labels):
                    files = node.get("files")
                    if not isinstance(files, Mapping) or not all(
                        name in files for name in ("boot-kernel", "boot-initrd")
                    ):
                        continue
                    rank = (
                        _release_version(node, subarch),
                        release,
                        kflavor == "generic",
                        subarch.startswith("ga-"),
                        label == "stable",
                        subarch,
                        label,
                    )
                    path = f"ubuntu/{arch}/{subarch}/{release}/{label}"
                    found.append(_Candidate(rank, path, release, subarch, label, node))
    return found


def _release_version(node: Mapping[str, Any], subarch: str) -> tuple[int, int]:
    for text in (node.get("release_title"), subarch.removeprefix("ga-")):
        if isinstance(text, str) and (match := _VERSION.match(text)):
            return int(match.group(1)), int(match.group(2))
    return (0, 0)


def _children(node: object) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(node, Mapping):
        return []
    return [(str(key), value) for key, value in node.items() if isinstance(value, Mapping)]


def find_template(templates_dir: Path, name: str) -> Path | None:
    """The template file for the snapshot-relative ``name``, or None (blocking).

    ``name`` is already checked by the caller (no ``..``, hidden or empty
    segment); a link that leads out of ``templates_dir`` is not followed.
    """
    base = os.path.realpath(templates_dir)
    real = Path(base, name).resolve()
    if not str(real).startswith(base + os.sep):
        return None
    try:
        info = real.stat()
    except OSError:
        return None
    return real if stat.S_ISREG(info.st_mode) else None


def _load(template: Path, snapshot: Path, name: str) -> tuple[str, dict[str, Any]]:
    """The template's text and the snapshot's ``maas.meta`` (blocking)."""
    try:
        with template.open("rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise RenderError(name, f"cannot read the template ({exc.strerror})") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise RenderError(name, f"the template is over {MAX_TEMPLATE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(name, "the template is not UTF-8 text") from None
    try:
        meta = json.loads((snapshot / META_NAME).read_bytes())
    except (OSError, ValueError):
        meta = {}
    return text, meta if isinstance(meta, dict) else {}


async def render_boot_file(
    config: BootConfig, name: str, snapshot: Path, rack_url: str
) -> bytes | None:
    """The rendered template for ``name`` against ``snapshot``; None when no template has
    that name. RenderError (logged as ``boot_config_render_failed``) when it cannot be
    rendered whole."""
    if config.templates_dir is None:
        return None
    template = await asyncio.to_thread(find_template, config.templates_dir, name)
    if template is None:
        return None
    try:
        text, meta = await asyncio.to_thread(_load, template, snapshot, name)
        variables = {**image_variables(meta), **rack_variables(rack_url)}
        return render(text, variables, template=name).encode("utf-8")
    except RenderError as exc:
        log.error(  # noqa: TRY400 - the operator's template, not a crash: no traceback
            "boot_config_render_failed",
            template=name,
            snapshot=snapshot.name,
            reason=exc.reason,
            names=list(exc.names),
            error=str(exc),
        )
        raise
