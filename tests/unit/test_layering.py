"""ARCHITECTURE.md rules 1 and 2, checked on the source: sans-IO modules import no I/O;
each third-party protocol library is imported by exactly one module; the floors of the
house read top-down (every import points at the same floor or a lower one); the store
imports nothing of postroom's but the foundation; and there is no import circle.

Imports are walked with `ast`, all of them: deferred imports inside functions and
`TYPE_CHECKING` blocks count, because a circle hidden in a function is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "postroom"

SANS_IO = [
    "imap/wire", "smtp/wire.py", "smtp/paths.py", "pop3/wire.py", "sasl.py", "mail",
    "smtp/policy.py",
    "outbound/schedule.py", "mailauth/dmarc.py", "outbound/replyparse.py",
    "security/proxy_protocol.py", "junk/tokens.py", "junk/classifier.py", "checks/eicar.py",
    "sieve", "managesieve/wire.py", "imap/compress.py",
    "tls/clienthello.py", "tls/stspolicy.py",
    # JMAP's JSON core and Email rendering; the HTTP side (later) lives beside them
    *(f"jmap/{name}.py" for name in ("types", "errors", "core", "standard", "query",
                                      "patch", "session", "emailheaders", "emailbody",
                                      "emailview")),
]
FORBIDDEN_IN_SANS_IO = {"asyncio", "ssl", "socket", "postroom.store", "aiosqlite"}

# library → the one module allowed to import it
OWNED_LIBRARIES = {
    "dkim": "mailauth/dkim.py",
    "spf": "mailauth/spf.py",
    "aiosqlite": "store/sqlite.py",
    "rich": "cli/",  # a folder: any module of it
    "acme": "tls/acmeclient.py",
    "josepy": "tls/acmeclient.py",
    "re2": "sieve/match.py",
    # h11: one module per side, the client (rspamd) and the server (MTA-STS policy)
    "h11": ("checks/httpclient.py", "tls/policyserver.py"),
    # defusedxml: received DMARC reports (decision 0047), Outlook autodiscover requests
    "defusedxml": ("reports/dmarcxml.py", "web/autoconfig.py"),
    "prometheus_client": "metrics.py",
}

# The floors, top to bottom: a module may import its own floor and the floors below,
# never one above. Keys are postroom's top-level modules and packages; a new one must be
# given a floor here (the test says so). Why each sits where it does:
# - top: the process itself. app.py wires everything; workers.py is the SMTP worker pool
#   app.py starts; workerprocess.py is a worker's entry point (it builds an App).
# - tools: what the CLI runs (import/export, selftest and the DNS helper); the running
#   server imports only selftest/domainadvice.py, from app.py, to hand the admin console
#   its DNS advice (web/ is below); they may use anything below.
# - protocols: the wire and its sessions. They import services, never each other.
# - services: what sessions and the queue share. runtime.py is the bundle of services
#   handed to a session (it holds an AccountService), so it sits with them.
# - mailauth: SPF/DKIM/DMARC engines and DKIM keys; above dns/, whose answers they judge.
# - base: storage, message handling, DNS queries, TLS contexts, SASL, connection closing.
# - foundation: configuration, errors, clocks, logging, the event-loop choice, the
#   garbage collector's settings, the sessions' wakeable reads.
FLOORS: dict[str, tuple[str, ...]] = {
    "top": ("__main__", "app", "cli", "workers", "workerprocess"),
    "tools": ("importers", "selftest"),
    "protocols": ("smtp", "imap", "pop3", "managesieve", "web", "jmap"),
    "services": ("delivery", "outbound", "accounts", "checks", "security", "runtime",
                 "junk", "reports"),
    "mailauth": ("mailauth",),
    "base": ("store", "mail", "dns", "tls", "sasl", "closing", "sieve", "metrics"),
    "foundation": ("__init__", "config", "configfilter", "configsieve", "configtransport",
                   "configweb", "configtypes", "errors", "clock", "logsetup", "loops",
                   "collector", "wakers"),
}
FLOOR_ORDER = list(FLOORS)  # index 0 is the top
FLOOR_OF = {part: FLOOR_ORDER.index(floor) for floor, parts in FLOORS.items() for part in parts}
PROTOCOLS = frozenset(FLOORS["protocols"])
# What store/ may import of postroom's besides itself (issue 16: errors/clock-level only;
# loops for stopping its LISTEN task).
STORE_MAY_IMPORT = frozenset({"errors", "clock", "config", "loops"})


# -- walking the imports -------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False,
                   modules: frozenset[str] | None = None) -> set[str]:
    """Every module named by an import in `source` (relative imports resolved against
    `module`). `from x import y` names `x.y` when that is one of `modules` (importing a
    submodule through its package is not an import of the package's own code), else `x`;
    without `modules`, both."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if modules is None:
                    names.update((base, submodule))
                else:
                    names.add(submodule if submodule in modules else base)
    return names


def imported_modules(path: Path, modules: frozenset[str] | None = None) -> set[str]:
    return imported_names(path.read_text(), module_name(path),
                          is_package=path.name == "__init__.py", modules=modules)


def postroom_graph() -> dict[str, set[str]]:
    """module → the postroom modules it imports."""
    paths = sorted(SRC.rglob("*.py"))
    modules = frozenset(module_name(path) for path in paths)
    return {module_name(path): {name for name in imported_modules(path, modules)
                                if name in modules and name != module_name(path)}
            for path in paths}


def part_of(module: str) -> str:
    """postroom.smtp.session → smtp; postroom → __init__ (the package's own module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# -- the rules, as functions of a graph (so the tests below can feed them a bad one) -------


def unplaced_parts(graph: Mapping[str, Iterable[str]]) -> set[str]:
    return {part_of(module) for module in graph} - FLOOR_OF.keys()


def floor_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        here = part_of(module)
        for target in targets:
            there = part_of(target)
            if here == there or here not in FLOOR_OF or there not in FLOOR_OF:
                continue
            if FLOOR_OF[there] < FLOOR_OF[here]:
                found.append(f"{module} ({FLOOR_ORDER[FLOOR_OF[here]]}) imports {target} "
                             f"({FLOOR_ORDER[FLOOR_OF[there]]}), a floor above it")
            elif here in PROTOCOLS and there in PROTOCOLS:
                found.append(f"{module} imports {target}: protocols do not import each other")
    return sorted(found)


def store_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items()
                  if part_of(module) == "store" for target in targets
                  if part_of(target) not in STORE_MAY_IMPORT | {"store"})


def import_circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def package_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """The same graph between top-level parts (smtp, store, …)."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = part_of(module)
        parts.setdefault(here, set()).update(
            part_of(target) for target in targets if part_of(target) != here)
    return parts


# -- the source as it is --------------------------------------------------------------------


def python_files(relative: str) -> list[Path]:
    target = SRC / relative
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    return [target] if target.exists() else []


def test_sans_io_modules_import_no_io() -> None:
    checked = 0
    for relative in SANS_IO:
        for path in python_files(relative):
            checked += 1
            for name in imported_modules(path):
                bad = {f for f in FORBIDDEN_IN_SANS_IO if name == f or name.startswith(f + ".")}
                assert not bad, f"{path.relative_to(SRC)} imports {name}"
    assert checked > 0


def test_each_library_lives_in_one_module() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        for name in imported_modules(path):
            top = name.split(".")[0]
            owner = OWNED_LIBRARIES.get(top)
            owners = (owner,) if isinstance(owner, str) else owner or ()
            assert not owners or any(one == relative or (
                one.endswith("/") and relative.startswith(one)) for one in owners), (
                f"{relative} imports {top}; only {owner} may")


def test_every_package_has_a_floor() -> None:
    assert not unplaced_parts(postroom_graph()), "give it a floor in FLOORS"


def test_imports_point_down_the_floors() -> None:
    graph = postroom_graph()
    assert sum(len(targets) for targets in graph.values()) > 300  # the walk found imports
    assert floor_violations(graph) == []


def test_store_imports_only_the_foundation() -> None:
    assert store_violations(postroom_graph()) == []


def test_no_import_circle_between_modules() -> None:
    assert import_circles(postroom_graph()) == []


def test_no_import_circle_between_packages() -> None:
    assert import_circles(package_graph(postroom_graph())) == []


# -- the rules fail on a violating import ---------------------------------------------------


def graph_of(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """A synthetic tree: module name → its source text."""
    modules = frozenset(sources)
    return {module: {name for name in imported_names(text, module, modules=modules)
                     if name in modules}
            for module, text in sources.items()}


@pytest.mark.parametrize(("importer", "imported"), [
    ("postroom.security.limits", "postroom.smtp.replies"),  # a service reaching up
    ("postroom.dns.resolver", "postroom.mailauth.keys"),  # dns/ below mailauth/
    ("postroom.outbound.worker", "postroom.smtp.receive"),  # the queue into smtp/
    ("postroom.runtime", "postroom.importers.maildir"),  # the server into the tools
    ("postroom.mail.address", "postroom.imap.wire.grammar"),
    ("postroom.smtp.session", "postroom.imap.session"),  # protocol to protocol
    ("postroom.store.sqlite", "postroom.app"),
])
def test_a_violating_import_is_reported(importer: str, imported: str) -> None:
    graph = graph_of({importer: f"from {imported} import something\n", imported: ""})
    assert floor_violations(graph) != []
    assert floor_violations(graph_of({importer: "", imported: ""})) == []


@pytest.mark.parametrize("source", [
    "from postroom.mail.headers import split_message\n",
    "from postroom.dns import resolver\n",
    "from ...tls.contexts import TlsContexts\n",  # relative: resolved, then judged
])
def test_store_may_not_import_the_rest_of_postroom(source: str) -> None:
    target = ("postroom.tls.contexts" if "tls" in source
              else "postroom.dns.resolver" if "dns" in source else "postroom.mail.headers")
    graph = graph_of({"postroom.store.sql.rows": source, target: ""})
    assert store_violations(graph) == [f"postroom.store.sql.rows imports {target}"]
    allowed = graph_of({"postroom.store.sqlite": "from postroom.errors import Refused\n",
                        "postroom.errors": ""})
    assert store_violations(allowed) == []


def test_a_circle_is_reported_even_through_a_deferred_import() -> None:
    graph = graph_of({
        "postroom.app": "from postroom.workers import WorkerPool\n",
        "postroom.workers": "def main() -> None:\n    from postroom.cli import run\n",
        "postroom.cli": "def serve() -> None:\n    from postroom.app import App\n",
    })
    assert import_circles(graph) == [["postroom.app", "postroom.cli", "postroom.workers"]]
    graph["postroom.workers"] = set()
    assert import_circles(graph) == []


def test_a_new_package_without_a_floor_is_reported() -> None:
    assert unplaced_parts({"postroom.webmail.views": set()}) == {"webmail"}
