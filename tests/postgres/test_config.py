"""STORAGE and DATABASE_URL: validated at load, the password never echoed."""

from __future__ import annotations

import pytest

from postroom.config import load_config
from postroom.errors import ConfigError


def test_sqlite_is_the_default() -> None:
    config = load_config(None, {}).config
    assert (config.storage, config.database_url) == ("sqlite", "")


def test_postgresql_needs_a_database_url() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"STORAGE": "postgresql"})
    assert str(caught.value) == "config: DATABASE_URL: required when STORAGE=postgresql"


@pytest.mark.parametrize("url", ["postgresql://u:pw@db.example:5432/mail",
                                 "postgres://u@db/mail", "host=db dbname=mail user=u"])
def test_accepted_urls(url: str) -> None:
    config = load_config(None, {"STORAGE": "postgresql", "DATABASE_URL": url}).config
    assert config.database_url == url
    assert "pw@" not in repr(config)


def test_bad_storage_and_url_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"^config: STORAGE: "):
        load_config(None, {"STORAGE": "mysql"})
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"STORAGE": "postgresql", "DATABASE_URL": "secret-garbage"})
    assert "DATABASE_URL" in str(caught.value) and "secret-garbage" not in str(caught.value)
