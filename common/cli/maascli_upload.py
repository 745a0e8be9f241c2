"""``boot-resources create ... content@=FILE``: a chunked upload with a progress bar.

As the maas CLI does it: the sha256 and size of FILE are computed locally and
sent (sorted with the other fields) in place of the content; the answer's
newest set must hold exactly one file. If that file is already complete (the
region holds those bytes) nothing is uploaded; otherwise FILE goes to the
file's ``upload_uri`` in signed 4 MiB ``PUT`` requests, each answered 200.
Finally the resource is read again and printed.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from common.cli.maascli_aio import AsyncApiClient, read_file
from common.cli.maascli_commands import UPLOAD_FIELD, Invocation
from common.cli.maascli_http import API_ERROR_EXIT, ApiFileError, ApiResponse, print_response
from common.ops.progress import TransferProgress

CHUNK_SIZE = 4 << 20
CONTENT_FIELD = UPLOAD_FIELD


def is_upload(invocation: Invocation) -> bool:
    """True for ``boot-resources create`` given ``content@=FILE``."""
    return invocation.is_upload


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of ``path``, read in chunks; blocking: run it in a thread."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def upload_target(resource: Any) -> dict[str, Any]:
    """The file of the newest set in a create answer; ValueError unless there is exactly one."""
    sets = resource.get("sets") if isinstance(resource, dict) else None
    if not isinstance(sets, dict) or not sets:
        raise ValueError("the answer has no sets")
    files = sets[max(sets)].get("files")
    if not isinstance(files, dict) or len(files) != 1:
        raise ValueError("the newest set does not hold exactly one file")
    target: dict[str, Any] = next(iter(files.values()))
    if not target.get("complete") and not isinstance(target.get("upload_uri"), str):
        raise ValueError("the incomplete file has no upload_uri")
    return target


async def upload_resource(
    client: AsyncApiClient, invocation: Invocation, *, out: TextIO, err: TextIO
) -> int:
    """Create the resource and upload its content; the exit code (0, or 2 on an API error).

    Raises ApiFileError when the content cannot be read, ConnectError on transport failure.
    """
    path = next(p for name, p in invocation.files if name == CONTENT_FIELD)
    try:
        sha256, size = await asyncio.to_thread(hash_file, path)
    except OSError as exc:
        raise ApiFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    fields = sorted(
        [
            *((k, v) for k, v in invocation.data if k not in ("size", "sha256")),
            ("sha256", sha256),
            ("size", str(size)),
        ]
    )
    extra = [(name, await read_file(p)) for name, p in invocation.files if name != CONTENT_FIELD]
    created = await client.request(
        "POST", client.handler_url(invocation), fields=fields, files=extra
    )
    if not created.ok:
        return print_response(created, out=out, err=err)
    try:
        resource = created.json()
        target = upload_target(resource)
    except ValueError as exc:
        print(f"unexpected answer to the create request: {exc}", file=err)
        return API_ERROR_EXIT
    if target.get("complete"):
        print(f"{path.name}: the server already holds these bytes; nothing to upload.", file=err)
    else:
        failed = await _put_chunks(
            client,
            client.url_for(target["upload_uri"]),
            path,
            size,
            label=str(resource.get("name", path.name)),
            err=err,
        )
        if failed is not None:
            return print_response(failed, out=out, err=err)
    uri = resource.get("resource_uri")
    if not isinstance(uri, str):
        return print_response(created, out=out, err=err)
    return print_response(await client.request("GET", client.url_for(uri)), out=out, err=err)


async def _put_chunks(
    client: AsyncApiClient, url: str, path: Path, size: int, *, label: str, err: TextIO
) -> ApiResponse | None:
    """PUT the file in chunks; the first answer that is not 200, or None when all were."""
    progress = TransferProgress(total_bytes=size, total_files=1, label=label, stream=err)
    f: BinaryIO = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK_SIZE):
            response = await client.request(
                "PUT", url, raw=chunk, raw_type="application/octet-stream"
            )
            if response.status != 200:
                return response
            progress.advance(len(chunk))
        progress.file_done()
    finally:
        await asyncio.to_thread(f.close)
        progress.close()
    return None
