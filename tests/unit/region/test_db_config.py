"""[database] url: SQLite by default, a sqlite:/// file or a postgresql:// server."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from region.config import RegionConfig, load_config
from region.db.engine import numbered_placeholders
from region.db.postgres import connect_options, redacted


def write(tmp_path: Path, text: str) -> Path:
    """``text`` as a config file in ``tmp_path``."""
    path = tmp_path / "regiond.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_database_is_region_db_in_the_data_dir() -> None:
    """Without [database] url the region opens <data_dir>/region.db."""
    config = RegionConfig(data_dir=Path("/srv/region"))
    assert config.database == Path("/srv/region/region.db")


def test_a_url_in_the_file_or_the_environment_names_the_database(tmp_path: Path) -> None:
    """A sqlite:/// URL gives its file; BOOTSYNC_REGIOND_DATABASE_URL wins over the file."""
    path = write(tmp_path, '[database]\nurl = "sqlite:///srv/other.db"\n')
    assert load_config(path).database == Path("/srv/other.db")
    url = "postgresql://bootsync@db.example/region"
    env = {"BOOTSYNC_REGIOND_DATABASE_URL": url}
    assert load_config(path, environ=env).database == url


def test_an_unknown_scheme_is_refused_without_echoing_the_url(tmp_path: Path) -> None:
    """mysql://... is a config error naming the key, and the password is not in the message."""
    path = write(tmp_path, '[database]\nurl = "mysql://u:s3cret@h/db"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "database.url" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_placeholders_are_numbered_outside_literals_and_comments() -> None:
    """``?`` becomes $1, $2, ... but a ``?`` inside quotes or a comment stays."""
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ? -- why?\nAND c = ?"
    assert numbered_placeholders(sql) == (
        "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $2 -- why?\nAND c = $3"
    )


def test_connection_options_come_from_the_url_and_passwords_are_redacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The URL's password and sslmode reach asyncpg; a ~/.pgpass line is used without one."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGSSLMODE", raising=False)
    url = "postgresql://u:pw@h:5433/db?sslmode=verify-full"
    assert connect_options(url) == {"password": "pw", "ssl": "verify-full"}
    assert "pw" not in redacted(url)
    passfile = tmp_path / "pgpass"
    passfile.write_text("h:5433:db:u:from\\:file\n", encoding="utf-8")
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert connect_options("postgresql://u@h:5433/db") == {"password": "from:file", "ssl": False}
