"""The Store's roles (issue 16): `Store` is exactly the union of Directory, Mailstore,
QueueStore, Importer, GuardStore and the roles issues 17–20 added (plus open/close), and
every backend plays every role with the role's own signatures. What each method does is
checked per role by the contract suites here (test_contract.py, test_guard_contract.py,
test_auth_failures.py, test_queue_claims.py, test_import_contract.py, …), each on every
backend."""

from __future__ import annotations

import inspect

import pytest

from postroom.store import Directory, GuardStore, Importer, Mailstore, QueueStore, Store
from postroom.store.accountstate_api import AccountStateStore
from postroom.store.apitokens_api import ApiTokenStore
from postroom.store.credentials_api import CredentialStore
from postroom.store.dmarcreports_api import DmarcReportStore
from postroom.store.fulltext_api import FulltextStore
from postroom.store.greylist_api import GreylistStore
from postroom.store.jmap_api import JmapStateStore
from postroom.store.jmapidentities_api import JmapIdentityStore
from postroom.store.jmapthreads_api import JmapThreadStore
from postroom.store.jmapuploads_api import JmapUploadStore
from postroom.store.junk_api import JunkStore
from postroom.store.metadata_api import MetadataStore
from postroom.store.mtasts_api import MtaStsStore
from postroom.store.quota_api import QuotaStore
from postroom.store.sieve_api import SieveStore
from postroom.store.tls_api import TlsStore
from postroom.store.tlsreports_api import TlsReportStore
from postroom.store.web_api import WebStore

ROLES: list[type] = [Directory, Mailstore, QueueStore, Importer, GuardStore, MetadataStore,
                     QuotaStore, GreylistStore, JunkStore, SieveStore, TlsStore, MtaStsStore,
         TlsReportStore, DmarcReportStore, FulltextStore, AccountStateStore, WebStore,
         CredentialStore, JmapStateStore, JmapThreadStore, JmapIdentityStore,
         JmapUploadStore, ApiTokenStore]


def _methods(protocol: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(value) for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")}  # fmt: skip


def test_store_is_the_union_of_its_roles() -> None:
    union: dict[str, inspect.Signature] = {}
    for role in ROLES:
        union |= _methods(role)
    every = {name for name in dir(Store) if not name.startswith("_")}
    assert every == set(union) | {"open", "close"}


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.__name__)
def test_roles_do_not_overlap_but_for_releasing_blobs(role: type) -> None:
    others = set().union(*(_methods(other) for other in ROLES if other is not role))
    assert set(_methods(role)) & others <= {"release_blob_if_unused"}


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.__name__)
async def test_every_backend_plays_every_role(store: Store, role: type) -> None:
    for name, wanted in _methods(role).items():
        method = getattr(type(store), name)
        assert inspect.iscoroutinefunction(method), name
        have = inspect.signature(method)
        assert list(have.parameters) == list(wanted.parameters), name
        assert [p.kind for p in have.parameters.values()] == [
            p.kind for p in wanted.parameters.values()], name
