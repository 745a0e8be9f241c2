"""``bootsync mirror --keep-upstream-metadata``: publish the upstream's signed metadata as is.

This is what sstream-mirror does, and what MAAS's local-mirror page expects: the
mirror serves the upstream's own ``index.sjson`` and products documents, byte
for byte, so MAAS's default boot source keyring (Ubuntu's) validates the
mirror and nobody has to distribute another key. The documents still list
every upstream product, also those the filters left out; a client of the
mirror selects only what the mirror holds (as with sstream-mirror). The files
themselves are verified against the signed sha256s as always.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.mirror.tree import STATE_DIR, MirrorTree
from common.transfer.streams import FetchedDocument, Stream
from simplestreams import StreamFormatError, served_path_problem


def upstream_documents(
    stream: Stream[FetchedDocument], index_path: str, item_paths: Mapping[str, str]
) -> dict[str, bytes]:
    """Stream path → bytes of every document the stream was read from: products first, index last.

    Raises StreamFormatError naming the document and its ``path`` when that path
    could not be published: not servable, inside the mirror's own ``.bootsync/``
    store, or the path of one of the mirror's files.
    """
    documents: dict[str, bytes] = {}
    for content_id, document in stream.documents.items():
        path = stream.index.entries[content_id].path
        assert path is not None  # read_stream fetched it from there
        _check(path, f"{stream.index_document.url}: index[{content_id}].path", item_paths)
        documents[path] = document.body
    _check(index_path, stream.index_document.url, item_paths)
    documents[index_path] = stream.index_document.body
    return documents


def _check(path: str, location: str, item_paths: Mapping[str, str]) -> None:
    problem = served_path_problem(path)
    if problem is None and path.split("/", 1)[0] == STATE_DIR:
        problem = f"path is inside the mirror's own {STATE_DIR}/ store"
    if problem is None and path in item_paths:
        problem = "path is also the path of an item"
    if problem is not None:
        raise StreamFormatError(location, f"{path!r}: {problem}")


async def write_upstream_metadata(tree: MirrorTree, documents: Mapping[str, bytes]) -> bool:
    """Write ``documents`` in their order (the index last); True if any changed."""
    changed = False
    for path, body in documents.items():
        changed |= await tree.write_document(path, body)
    return changed
