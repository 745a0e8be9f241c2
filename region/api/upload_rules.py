"""MAAS's rules for a custom image upload's fields (``POST boot-resources/``).

- ``name``: a leading ``custom/`` is dropped; ``OS/RELEASE`` only for a supported
  OS; reserved (``<name> is a reserved name``): any OS, release or OS/RELEASE the
  sources offer, a supported OS name, ``centosN``/``centosNN``. Ours on top:
  each part must be a safe path segment, as the image is published under it.
- ``architecture``: ``ARCH/SUBARCH`` with a known ARCH.
- ``filetype``: tgz (default) … ddraw, stored as MAAS's root-tgz … root-dd.raw.
- ``base_image``: ``OS/RELEASE`` of ubuntu, centos or rhel (a release the
  sources offer, once they are known); ignored for an ``OS/RELEASE`` name, as
  MAAS does. A custom image without one gets its earlier upload's base, else
  the commissioning OS/release (region/api/uploads.py, :func:`is_custom`).
- ``sha256`` (64 hex digits) and ``size`` (≥ 1) are required without ``content``.

:func:`check_upload` raises ValidationError (400 ``{field: [message]}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from region.api.http import Params, ValidationError
from region.db.uploads import NewUpload

CUSTOM_PREFIX = "custom/"
SUPPORTED_OS = (
    "ubuntu",
    "centos",
    "rhel",
    "custom",
    "windows",
    "suse",
    "esxi",
    "ubuntu-core",
    "ol",
)
BASE_IMAGE_OS = ("ubuntu", "centos", "rhel")
KNOWN_ARCHES = ("amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x")
FILETYPES = {
    "tgz": "root-tgz",
    "tbz": "root-tbz",
    "txz": "root-txz",
    "ddtgz": "root-dd",
    "ddtbz": "root-dd.tar.bz2",
    "ddtxz": "root-dd.tar.xz",
    "ddtar": "root-dd.tar",
    "ddbz2": "root-dd.bz2",
    "ddgz": "root-dd.gz",
    "ddxz": "root-dd.xz",
    "ddraw": "root-dd.raw",
}
REQUIRED = "This field is required."
NO_SUBARCH = "Invalid architecture, missing subarchitecture."
BASE_FORMAT = "a base image must follow the format: <osystem>/<series>"
BASE_CUSTOM = "custom images require a valid non-custom OS type base image"
BASE_UNKNOWN = "please select a valid base image OS and version"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_SEGMENT_RULE = "use letters, digits, '.', '_', '+' and '-' (at most 64)"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CENTOS = re.compile(r"centos\d\d?")
_TRUE = frozenset({"true", "yes", "on", "1"})


@dataclass(frozen=True)
class Offered:
    """What the sources offer: OS, release and OS/RELEASE names, ARCH/SUBARCH pairs."""

    names: frozenset[str] = frozenset()
    architectures: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UploadRequest:
    """A checked upload: what to record, and the sha256/size the client announced."""

    upload: NewUpload
    sha256: str | None
    size: int | None


def _name(params: Params, offered: Offered, errors: dict[str, list[str]]) -> str:
    name = (params.get("name") or "").strip()
    if not name:
        errors["name"] = [REQUIRED]
        return ""
    if name.startswith(CUSTOM_PREFIX):
        name = name.removeprefix(CUSTOM_PREFIX)
    os_name, slash, release = name.partition("/")
    if slash and os_name not in SUPPORTED_OS:
        errors["name"] = [
            f"Unsupport operating system {os_name}, supported operating "
            f"systems: {list(SUPPORTED_OS)}"
        ]
    elif not all(_SEGMENT.fullmatch(part) for part in ([os_name, release] if slash else [name])):
        errors["name"] = [f"Enter a valid name: {_SEGMENT_RULE}, and at most one '/'."]
    elif name in offered.names or name in SUPPORTED_OS or _CENTOS.fullmatch(name):
        errors["name"] = [f"{name} is a reserved name"]
    return name


def _architecture(params: Params, offered: Offered, errors: dict[str, list[str]]) -> str:
    value = (params.get("architecture") or "").strip()
    if not value:
        errors["architecture"] = [REQUIRED]
        return ""
    arch, slash, subarch = value.partition("/")
    if not slash:
        errors["architecture"] = [NO_SUBARCH]
    elif (
        arch not in KNOWN_ARCHES and value not in offered.architectures
    ) or not _SEGMENT.fullmatch(subarch):
        usable = sorted({f"{a}/generic" for a in KNOWN_ARCHES} | offered.architectures)
        errors["architecture"] = [
            f"'{value}' is not a valid architecture.  It should be one "
            f"of: {', '.join(repr(a) for a in usable)}."
        ]
    return value


def _base_image(params: Params, offered: Offered, errors: dict[str, list[str]]) -> str:
    value = (params.get("base_image") or "").strip()
    if not value:
        return ""
    os_name, slash, release = value.partition("/")
    if not slash or not os_name or not _SEGMENT.fullmatch(release):
        errors["base_image"] = [BASE_FORMAT]
    elif os_name not in BASE_IMAGE_OS:
        errors["base_image"] = [BASE_CUSTOM]
    elif any(n.startswith(f"{os_name}/") for n in offered.names) and value not in offered.names:
        errors["base_image"] = [BASE_UNKNOWN]
    return value


def _announced(
    params: Params, errors: dict[str, list[str]], required: bool
) -> tuple[str | None, int | None]:
    sha256, size_text = params.get("sha256") or None, params.get("size") or None
    if sha256 is not None and not _SHA256.fullmatch(sha256.strip()):
        errors["sha256"] = ["Enter the sha256 as 64 hexadecimal digits."]
    elif sha256 is None and required:
        errors["sha256"] = [REQUIRED]
    size: int | None = None
    if size_text is not None:
        try:
            size = int(size_text.strip())
        except ValueError:
            errors["size"] = ["Enter a whole number."]
        else:
            if size < 1:
                errors["size"] = ["Ensure this value is greater than or equal to 1."]
    elif required:
        errors["size"] = [REQUIRED]
    return (sha256.strip().lower() if sha256 else None), size


def is_custom(name: str) -> bool:
    """A checked name (``custom/`` dropped) is a custom image's: no ``OS/`` of its own."""
    return "/" not in name


def check_upload(params: Params, offered: Offered, *, has_content: bool) -> UploadRequest:
    """The upload ``params`` ask for; ValidationError listing every problem."""
    errors: dict[str, list[str]] = {}
    name = _name(params, offered, errors)
    architecture = _architecture(params, offered, errors)
    filetype = (params.get("filetype") or "tgz").strip()
    if filetype not in FILETYPES:
        errors["filetype"] = [
            f"Select a valid choice. {filetype} is not one of the available choices."
        ]
    raw_os, slash, _rest = (params.get("name") or "").strip().partition("/")
    # MAAS ignores base_image for an image named OS/RELEASE of a real OS: it is its own base.
    base_image = "" if slash and raw_os != "custom" else _base_image(params, offered, errors)
    sha256, size = _announced(params, errors, required=not has_content)
    if errors:
        raise ValidationError(errors)
    return UploadRequest(
        upload=NewUpload(
            name=name,
            architecture=architecture,
            title=(params.get("title") or "").strip(),
            filetype=FILETYPES[filetype],
            base_image=base_image,
            keep_old=(params.get("keep_old") or "").strip().lower() in _TRUE,
        ),
        sha256=sha256,
        size=size,
    )
