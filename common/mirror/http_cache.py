"""The mirror's upstream documents as last served, for conditional GETs next run.

``DIR/.bootsync/http-cache/<sha256 of the URL>.doc`` holds one document: a JSON
line (URL, ETag, Last-Modified, sha256 and size of the body), then the body as
served (signed). :func:`common.transfer.fetch.fetch_conditional` asks the upstream
with those validators and reuses the body on ``304 Not Modified``; read_stream
verifies it again. A file that is unreadable, for another URL or whose body
does not match its sha256 counts as missing (the document is fetched whole).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from common.storage.atomic import write_atomic
from common.transfer.fetch import CachedDocument

CACHE_DIR = "http-cache"


class MirrorDocumentCache:
    """A :class:`~common.transfer.fetch.DocumentCache` in a mirror's state directory.

    ``read_only`` (a dry run) answers from what is kept but writes nothing.
    """

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        self.directory = state_dir / CACHE_DIR
        self.read_only = read_only

    def path_for(self, url: str) -> Path:
        """The file that keeps ``url``'s document."""
        return self.directory / f"{hashlib.sha256(url.encode()).hexdigest()}.doc"

    async def get(self, url: str) -> CachedDocument | None:
        """The document kept for ``url``, or None."""
        return await asyncio.to_thread(self._read, url)

    async def put(self, url: str, document: CachedDocument) -> None:
        """Keep ``document`` for ``url`` (atomically; nothing when read-only)."""
        if not self.read_only:
            await asyncio.to_thread(self._write, url, document)

    def _read(self, url: str) -> CachedDocument | None:
        try:
            header, _, body = self.path_for(url).read_bytes().partition(b"\n")
            meta = json.loads(header)
        except (OSError, ValueError):
            return None
        if (
            not isinstance(meta, dict)
            or meta.get("url") != url
            or meta.get("size") != len(body)
            or meta.get("sha256") != hashlib.sha256(body).hexdigest()
        ):
            return None
        etag, modified = meta.get("etag"), meta.get("last_modified")
        return CachedDocument(
            body=body,
            etag=etag if isinstance(etag, str) else None,
            last_modified=modified if isinstance(modified, str) else None,
        )

    def _write(self, url: str, document: CachedDocument) -> None:
        meta = {
            "url": url,
            "etag": document.etag,
            "last_modified": document.last_modified,
            "sha256": hashlib.sha256(document.body).hexdigest(),
            "size": len(document.body),
        }
        header = json.dumps(meta, separators=(",", ":")).encode()
        write_atomic(self.path_for(url), header + b"\n" + document.body)
