"""Temporary: dump boot-resources answers to $CAPTURE_DIR (deleted after the comparison)."""
from __future__ import annotations
import json, os
from pathlib import Path
from tests.integration.region.test_boot_resources_list import Served, served, target  # noqa
from tests.integration.region.test_api_boot_resources import Api, api  # noqa
from tests.fakes.postgres import postgres_server  # noqa

OUT = Path(os.environ["CAPTURE_DIR"])


async def test_capture_synthetic(served: Served, target) -> None:
    """Dump."""
    eng = "pg" if isinstance(target, str) else "sqlite"
    body = await served.get("/boot-resources/")
    (OUT / f"{eng}_list_all.json").write_bytes(body)
    for t in ("synced", "generated", "uploaded", "all"):
        (OUT / f"{eng}_list_{t}.json").write_bytes(await served.get("/boot-resources/", type=t))
    for e in json.loads(body):
        (OUT / f"{eng}_detail_{e['id']}.json").write_bytes(await served.get(f"/boot-resources/{e['id']}/"))


async def test_capture_real_import(api: Api) -> None:
    """Dump."""
    await api.env.importer.run_import("test")
    resp = await api.call("GET", "/boot-resources/", key=api.user)
    body = await resp.read()
    (OUT / "import_list.json").write_bytes(body)
    for e in json.loads(body):
        r = await api.call("GET", f"/boot-resources/{e['id']}/", key=api.user)
        (OUT / f"import_detail_{e['id']}.json").write_bytes(await r.read())
