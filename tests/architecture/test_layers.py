"""The architecture rules of DESIGN.md 4.1/4.2/4.8, checked on the source (Zulip's idea).

Every ``*.py`` under the project packages is found on disk and given a layer by the first matching
pattern of ``LAYERS``; its imports are read with ``ast`` (including imports inside functions). New
files are checked automatically; a file that matches no pattern fails ``test_every_module_has_a_layer``
until it is classified here.

    layer 0 pure       stdlib, canonicaljson/unpaddedbase64 and other layer-0 modules; never Django
    layer 1 models     layer <= 1
    layer 2 reads      layer <= 2 (selectors, events/stream.py)
    layer 3 writes     layer <= 3 (actions, events/notify.py, accounts/uia.py)
    layer 4 interface  layer <= 4 (views, serializers, urls, admin, commands, DRF/HTTP glue)
    layer 5 wiring     anything (settings, root urls, asgi/wsgi); nothing imports it

Within one layer of layers 1-4 the app order of PACKAGES applies:
``rooms.actions`` may import ``events.actions``, never the reverse. Importing a lower layer of any
app is always allowed.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("matrixsrv", "accounts", "push", "events", "rooms", "e2ee", "ephemeral", "presence", "sync", "moderation")
APP_ORDER = {name: i for i, name in enumerate(PACKAGES)}

# Pure modules (DESIGN 4.1 principle 3). Listed ones that do not exist yet are simply absent.
PURE_MODULES = [
    "matrixsrv/errors.py",
    "matrixsrv/identifiers.py",
    "matrixsrv/config.py",
    "matrixsrv/dotted_paths.py",  # dot-separated property paths (push rules, event_fields)
    "accounts/tokens.py",
    "events/auth_rules.py",
    "events/power_levels.py",
    "events/room_versions.py",
    "events/redaction.py",
    "events/hashing.py",
    "events/pdu.py",  # value types + spec constant strings the pure rules work on
    "events/visibility.py",  # history visibility rules
    "sync/tokens.py",
    "sync/filters.py",
    "push/rules.py",  # push rules: predefined set, merge, PUT validation, evaluation
    "presence/rules.py",  # presence state machine: derived state, timers, what a sync or PUT changes
]
PURE_THIRD_PARTY = {"canonicaljson", "unpaddedbase64"}

# (pattern on the path relative to the repository, layer); the first match wins.
LAYERS: list[tuple[str, int]] = [
    *((path, 0) for path in PURE_MODULES),
    ("*/__init__.py", 0),  # package markers stay empty (no import side effects)
    # 5: project wiring
    ("matrixsrv/settings.py", 5),
    ("matrixsrv/urls.py", 5),
    ("matrixsrv/asgi.py", 5),
    ("matrixsrv/wsgi.py", 5),
    # 1: models
    ("*/models.py", 1),
    ("*/migrations/*.py", 1),
    ("matrixsrv/rawsql.py", 1),
    ("matrixsrv/metrics.py", 1),  # the Prometheus metric objects: counted by writers, the waiter, the middleware
    ("matrixsrv/sqlite/*.py", 1),  # the embedded mode's database backend  # hand-written SELECTs for the hottest reads, turned into model instances
    # 2: reads
    ("*/selectors.py", 2),
    ("events/stream.py", 2),  # the stream head is read by sync.selectors
    ("events/formatting.py", 2),  # client format of a stored event: used by actions (redacted_because) and reads
    ("events/timeline.py", 2),  # a room's history as one user may read it (visibility, pagination)
    ("accounts/account_data_selectors.py", 2),  # account data reads, the ignored-users list
    ("sync/recent.py", 2),  # the rooms recent wake-ups named: sync.selectors' guess of the rooms with news
    # 3: writes
    ("*/actions.py", 3),
    ("events/notify.py", 3),
    ("accounts/uia.py", 3),  # user-interactive auth sessions (writes UIASession)
    ("sync/account_data.py", 3),  # account data and tag writes (after events.notify in the app order)
    ("e2ee/backup.py", 3),  # server-side key backups: their few reads and writes together
    # 4: interface
    ("*/serializers.py", 4),
    ("*/views.py", 4),
    ("*/urls.py", 4),
    ("*/admin.py", 4),
    ("*/apps.py", 4),
    ("*/management/commands/*.py", 4),
    ("*/templatetags/*.py", 4),
    ("sync/waiter.py", 4),
    ("sync/quiet.py", 4),  # what the last long-poll read found, per worker: lets the next one skip it
    ("sync/batch.py", 4),  # the worker's long-poll reads queued and answered a batch at a time
    ("accounts/authentication.py", 4),
    ("accounts/throttles.py", 4),
    ("accounts/fallback.py", 4),
    ("matrixsrv/exception_handler.py", 4),
    ("matrixsrv/middleware.py", 4),
    ("matrixsrv/parsers.py", 4),
    ("matrixsrv/renderers.py", 4),
    ("matrixsrv/http.py", 4),
    ("matrixsrv/health.py", 4),  # /health, /ready and the schema gate
    ("matrixsrv/metrics_views.py", 4),  # /metrics and the request metrics middleware
    ("events/timeline_views.py", 4),
    ("accounts/account_data_views.py", 4),
    ("accounts/account_data_urls.py", 4),
    ("rooms/profile_views.py", 4),  # profiles and the user directory
]
# Deliberate exceptions to the direction rule: (importer path, imported module) -> why. Keep empty;
# an entry is technical debt with a reason, reviewed like code.
ALLOWED_UPWARD_IMPORTS: dict[tuple[str, str], str] = {}

LAYER_NAMES = {0: "pure", 1: "models", 2: "reads", 3: "writes", 4: "interface", 5: "wiring"}

# Modules of layers 0-3 that may use the channel layer: the one publisher (DESIGN 5.2).
CHANNELS_ALLOWED_BELOW_INTERFACE = {"events/notify.py"}
GROUP_SEND_ALLOWED = {"events/notify.py"}

# Django signals (DESIGN 4.1 principle 6). Framework hooks that are not domain logic may be listed
# here with a reason; none are needed so far.
SIGNALS_ALLOWED: dict[str, str] = {}
SIGNAL_NAMES = {
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
    "class_prepared",
    "pre_migrate",
    "post_migrate",
    "request_started",
    "request_finished",
    "got_request_exception",
    "setting_changed",
    "connection_created",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
}


@dataclass(frozen=True)
class Module:
    path: str  # "accounts/actions.py"
    name: str  # "accounts.actions"
    package: str  # the package relative imports resolve against

    @property
    def app(self) -> str:
        return self.name.split(".")[0]

    @property
    def layer(self) -> int | None:
        return layer_of(self.path)


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module imported: "accounts.models", "django.db", ...
    also: str | None = None  # for "from X import Y": "X.Y", in case Y is itself a module


def layer_of(path: str) -> int | None:
    return next((layer for pattern, layer in LAYERS if fnmatchcase(path, pattern)), None)


@cache
def project_modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            parts = rel[: -len(".py")].split("/")
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            name = ".".join(parts)
            found[name] = Module(rel, name, name if is_init else ".".join(parts[:-1]))
    return found


@cache
def parse(module: Module) -> ast.Module:
    return ast.parse((ROOT / module.path).read_text(), filename=module.path)


def imports_of(module: Module) -> list[Import]:
    return imports_in(parse(module), module.package)


def imports_in(tree: ast.Module, package: str) -> list[Import]:
    result: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            result.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                result.append(Import(node.lineno, base, f"{base}.{alias.name}"))
    return result


def resolve_project(imp: Import) -> Module | None:
    """The project module an import loads (``from accounts import views`` loads accounts.views)."""
    modules = project_modules()
    if imp.also and imp.also in modules:
        return modules[imp.also]
    return modules.get(imp.target)


def is_stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


def describe(module: Module, imp: Import, what: str) -> str:
    return f"{module.path}:{imp.line} ({LAYER_NAMES.get(module.layer, '?')}) imports {what}"


def modules_in_layers(*layers: int) -> list[Module]:
    return [m for m in project_modules().values() if m.layer in layers]


# -- the layer map itself --------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    unclassified = sorted(m.path for m in project_modules().values() if m.layer is None)
    assert not unclassified, (
        "Give these modules a layer in LAYERS (tests/architecture/test_layers.py, DESIGN 4.2): "
        + ", ".join(unclassified)
    )


def test_the_layer_map_matches_real_files() -> None:
    """The scan finds the project (guards against a silently empty check)."""
    paths = {m.path for m in project_modules().values()}
    assert {"accounts/models.py", "accounts/actions.py", "matrixsrv/errors.py"} <= paths


# -- layer 0 -----------------------------------------------------------------------------------------


def test_pure_modules_import_only_stdlib_pure_libraries_and_other_pure_modules() -> None:
    problems = []
    for module in modules_in_layers(0):
        for imp in imports_of(module):
            if imp.target == "__future__" or is_stdlib(imp.target):
                continue
            if imp.target.split(".")[0] in PURE_THIRD_PARTY:
                continue
            target = resolve_project(imp)
            if target is not None and target.layer == 0:
                continue
            what = target.name if target is not None else imp.target
            problems.append(describe(module, imp, what))
    assert not problems, "Layer-0 modules must stay pure (no Django, DRF or Channels):\n" + "\n".join(
        sorted(set(problems))
    )


def test_pure_modules_exist_where_the_design_lists_them() -> None:
    """The three pure modules the foundation ships are present (the rest appear as apps grow)."""
    for path in ("matrixsrv/errors.py", "matrixsrv/identifiers.py", "matrixsrv/config.py"):
        assert (ROOT / path).exists(), path


# -- layers 1-5 --------------------------------------------------------------------------------------


def layer_violation(importer: Module, target: Module) -> str | None:
    mine, theirs = importer.layer, target.layer
    if mine is None or theirs is None or mine == 0:
        return None  # unclassified: reported by test_every_module_has_a_layer; 0: its own test
    if theirs > mine:
        return f"a higher layer ({LAYER_NAMES[theirs]})"
    if theirs == mine and mine in (1, 2, 3, 4) and APP_ORDER[target.app] > APP_ORDER[importer.app]:
        return f"the same layer of a later app ({target.app} comes after {importer.app})"
    return None


def test_imports_flow_downward_only() -> None:
    problems = []
    for module in project_modules().values():
        for imp in imports_of(module):
            target = resolve_project(imp)
            if target is None or target is module:
                continue
            if (module.path, target.name) in ALLOWED_UPWARD_IMPORTS:
                continue
            if (why := layer_violation(module, target)) is not None:
                problems.append(describe(module, imp, f"{target.name}: {why}"))
    assert not problems, "Imports must flow downward (DESIGN 4.2):\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("kind", ["models", "selectors", "actions"])
def test_models_selectors_and_actions_never_import_the_interface(kind: str) -> None:
    interface = ("views", "serializers", "urls", "admin")
    problems = []
    for module in project_modules().values():
        if not module.path.endswith(f"/{kind}.py"):
            continue
        for imp in imports_of(module):
            target = resolve_project(imp)
            if (
                target is not None
                and target.name.rsplit(".", 1)[-1] in interface
                and ((module.path, target.name) not in ALLOWED_UPWARD_IMPORTS)
            ):
                problems.append(describe(module, imp, target.name))
    assert not problems, "\n".join(sorted(set(problems)))


def test_layers_below_the_interface_do_not_use_drf_or_channels() -> None:
    """Rules, models, reads and writes raise MatrixError and know nothing of DRF; only the notifier
    talks to the channel layer."""
    problems = []
    for module in modules_in_layers(0, 1, 2, 3):
        for imp in imports_of(module):
            top = imp.target.split(".")[0]
            if top == "rest_framework" or (
                top == "channels" and module.path not in CHANNELS_ALLOWED_BELOW_INTERFACE
            ):
                problems.append(describe(module, imp, imp.target))
    assert not problems, "\n".join(sorted(set(problems)))


def test_only_the_notifier_calls_group_send() -> None:
    problems = []
    for module in project_modules().values():
        if module.path in GROUP_SEND_ALLOWED:
            continue
        for node in ast.walk(parse(module)):
            if isinstance(node, ast.Attribute) and node.attr == "group_send":
                problems.append(f"{module.path}:{node.lineno} uses group_send")
    assert not problems, "events/notify.py is the only publisher (DESIGN 5.2):\n" + "\n".join(problems)


# -- signals -----------------------------------------------------------------------------------------


def _is_signal_module(name: str) -> bool:
    return name.startswith("django.") and (
        name == "django.dispatch" or name.startswith("django.dispatch.") or name.endswith(".signals")
    )


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def signal_uses(path: str, tree: ast.Module, package: str) -> list[str]:
    found = []
    for imp in imports_in(tree, package):
        if _is_signal_module(imp.target) or (imp.also and _is_signal_module(imp.also)):
            found.append(f"{path}:{imp.line} imports {imp.also or imp.target}")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if _dotted(decorator).split(".")[-1] == "receiver":
                    found.append(f"{path}:{decorator.lineno} @receiver on {node.name}()")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "connect"
        ):
            sender = _dotted(node.func.value).split(".")[-1]
            if sender in SIGNAL_NAMES:
                found.append(f"{path}:{node.lineno} {sender}.connect(...)")
    return found


def test_no_signals_for_domain_logic() -> None:
    problems = []
    for module in project_modules().values():
        if module.path not in SIGNALS_ALLOWED:
            problems.extend(signal_uses(module.path, parse(module), module.package))
    assert not problems, "No signals for domain logic (DESIGN 4.1 principle 6):\n" + "\n".join(problems)


def test_the_signal_check_catches_receivers_and_connects() -> None:
    """Negative control: the detector really sees the patterns it forbids."""
    source = (
        "from django.db.models import signals\n"
        "from django.dispatch import receiver\n"
        "@receiver(signals.post_save)\n"
        "def on_save(sender, **kw): pass\n"
        "signals.post_delete.connect(on_save)\n"
        "def lazy():\n"
        "    from django.core.signals import request_finished\n"
    )
    found = signal_uses("probe.py", ast.parse(source), "accounts")
    assert [line.split(" ")[0] for line in found] == [
        "probe.py:1",
        "probe.py:2",
        "probe.py:7",
        "probe.py:3",
        "probe.py:5",
    ], found


def test_the_layer_check_catches_an_upward_import() -> None:
    """Negative control for the direction rule, including ``from pkg import module`` and relative imports."""
    modules = project_modules()
    actions, selectors = modules["accounts.actions"], modules["accounts.selectors"]
    tree = ast.parse("from accounts import views\nfrom . import actions\nfrom .models import User\n")
    targets = [resolve_project(imp) for imp in imports_in(tree, selectors.package)]
    assert [t.name for t in targets if t] == ["accounts.views", "accounts.actions", "accounts.models"]
    assert layer_violation(selectors, modules["accounts.views"]) is not None
    assert layer_violation(selectors, actions) is not None
    assert layer_violation(actions, selectors) is None
    assert layer_violation(modules["accounts.models"], modules["matrixsrv.errors"]) is None


# -- admin (DESIGN 4.8) --------------------------------------------------------------------------------


def _admin_request():  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = SimpleNamespace(
        is_active=True,
        is_staff=True,
        is_superuser=True,
        pk=0,
        has_perm=lambda *a, **k: True,
        has_perms=lambda *a, **k: True,
        has_module_perms=lambda *a, **k: True,
    )
    return request


@pytest.mark.parametrize("label", ["events.Event", "rooms.Membership"])
def test_admins_for_events_and_memberships_are_read_only(label: str) -> None:
    """Event and Membership rows change only through actions (stream position + notification)."""
    from django.apps import apps
    from django.contrib.admin.sites import all_sites

    try:
        model = apps.get_model(label)
    except LookupError:
        pytest.skip(f"{label} does not exist yet")
    request = _admin_request()
    checked = []
    for site in list(all_sites):
        for model_admin in site._registry.values():
            candidates = [model_admin] if model_admin.model is model else []
            candidates += [
                inline(model_admin.model, site)
                for inline in getattr(model_admin, "inlines", [])
                if inline.model is model
            ]
            for candidate in candidates:
                name = type(candidate).__name__
                checked.append(name)
                add_args = (request,) if candidate is model_admin else (request, None)
                assert candidate.has_add_permission(*add_args) is False, (
                    f"{name} must not allow adding {label}"
                )
                assert candidate.has_change_permission(request) is False, (
                    f"{name} must not allow changing {label}"
                )
                assert candidate.has_change_permission(request, None) is False
                assert candidate.has_delete_permission(request) is False, (
                    f"{name} must not allow deleting {label}"
                )
