"""Fixtures of the JMAP tests, borrowed (not copied): the web console's whole-App server
(tests/web/conftest.py: `web_app`, started with WEB_PORT on 127.0.0.1) and the store
contract suite's per-backend stores (tests/store/conftest.py)."""

from tests.store.conftest import (  # noqa: F401  (fixtures)
    backend,
    blobs,
    database_url,
    feed,
    files,
    make_store,
    store,
)
from tests.web.conftest import web_app  # noqa: F401  (fixture)
