"""The optional compiled build: which modules mypyc compiles, and which build is running.

tickline is one pure-Python source tree. ``make compiled`` compiles the modules listed in
:data:`CANDIDATES` with mypyc into extension modules beside their ``.py`` files (the
package still works without them: ``make pure`` deletes them). Python prefers an extension
module to a ``.py`` file of the same name, so this module decides, per candidate, which one
is imported, before anything of tickline is (``tickline/__init__.py`` calls
:func:`activate`):

* ``TICKLINE_PURE=1`` in the environment forces every candidate to its ``.py`` source;
* a compiled module is used only if the *build record* (``_compiled.json``, written by the
  build beside this file) names it with the SHA-256 of the source it was compiled from and
  that still equals the ``.py`` file's hash: a stale ``.so`` (the source changed since
  ``make compiled``) is never used for changed source: the whole build is then pure (mypyc
  compiles the modules as one group, which cannot be split at import), and
  :func:`build_info` lists the changed modules as stale.

Why mypyc (measured on ``matching/book.py``, see docs/benchmarks.md): it compiles the
project's own type-annotated source as it is (Cython's pure-Python mode needs its own
annotations to turn classes into native ones), and the slots classes of the book become
native classes. A module that *defines* a ``msgspec.Struct`` is never compiled: mypyc drops
the class keywords (``tag=``, ``array_like=``, ``gc=``...), which would silently change the
wire and journal encodings; :func:`defines_struct` keeps such a module out of the build.

``python -m tickline._build compile|auto|clean|status`` is what the Makefile runs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
"""``src/tickline`` (or the installed package directory)."""

RECORD = PACKAGE_DIR / "_compiled.json"
"""The build record: compiler, and each compiled module's source hash."""

CANDIDATES: tuple[str, ...] = (
    "tickline.loop",
    "tickline.cluster.release",
    "tickline.journal.framing",
    "tickline.matching.book",
    "tickline.matching.engine",
    "tickline.matching.iceberg",
    "tickline.matching.replace",
    "tickline.matching.risk",
    "tickline.matching.state",
    "tickline.matching.stops",
    "tickline.matching.validation",
    "tickline.gateway.fix.codec",
    "tickline.gateway.fix.app",
    "tickline.gateway.fix.store",
    "tickline.gateway.fix.fast",
    "tickline.stream.bars",
    "tickline.stream.history",
    "tickline.stream.publisher",
    "tickline.stream.reports",
    "tickline.stream.routing",
)
"""Modules the compiled build compiles, if they compile: the engine's hot path, and the
exchange loop's per-command path (``loop``, the publisher and its bars, the report builder,
history and router; ``cluster.release``, the cluster gateway's; their Structs live in
``stream.messages``, ``stream.report_types`` and ``cluster.wire``, which stay pure). Extend
the list as modules become compilable (plain classes with exact types, no Struct definitions,
every attribute and method a class uses declared in its body: mypyc rejects an
``if TYPE_CHECKING:`` block in a class body); ``python -m tickline._build compile`` skips,
with a reason, any that defines a Struct."""

PURE_ENV = "TICKLINE_PURE"


def source_path(module: str) -> Path:
    """The ``.py`` file of ``module`` (a ``tickline.*`` name) inside this package."""
    parts = module.split(".")
    return PACKAGE_DIR.joinpath(*parts[1:]).with_suffix(".py")


def source_hash(path: Path) -> str:
    """SHA-256 (hex) of a source file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def defines_struct(path: Path) -> bool:
    """Whether the module at ``path`` defines a class deriving from ``msgspec.Struct`` (or
    ``Struct`` imported from msgspec): such a module must stay pure (see module doc)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = ast.unparse(base)
                if name in ("msgspec.Struct", "Struct"):
                    return True
    return False


def pure_forced() -> bool:
    """``TICKLINE_PURE`` set to anything but empty or ``0``."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def read_record() -> dict[str, Any]:
    """The build record, or an empty one when there is none (or it is unreadable)."""
    try:
        data = json.loads(RECORD.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"modules": {}}
    if not isinstance(data, dict) or not isinstance(data.get("modules"), dict):
        return {"modules": {}}
    return data


def usable_compiled() -> tuple[set[str], set[str]]:
    """``(usable, stale)``: recorded modules whose source hash still matches, and those whose
    source changed since the build (their ``.py`` is used)."""
    usable: set[str] = set()
    stale: set[str] = set()
    for module, digest in read_record()["modules"].items():
        path = source_path(str(module))
        try:
            same = source_hash(path) == digest
        except OSError:
            same = False
        (usable if same else stale).add(str(module))
    if stale:
        # mypyc builds the modules as one group: a compiled module initialises the others
        # of its group directly (no finder is asked), so one stale module makes the whole
        # group unusable.
        return set(), stale
    return usable, stale


class _PureFinder:
    """A ``sys.meta_path`` finder that loads the listed modules from their ``.py`` source,
    ahead of the path finder that would pick a compiled extension module."""

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


_finder: _PureFinder | None = None


def activate() -> None:
    """Install the finder that keeps every candidate pure unless its compiled module is
    recorded, current, and ``TICKLINE_PURE`` is not set. Idempotent; called by
    ``tickline/__init__.py`` before any other tickline module is imported."""
    global _finder
    if _finder is not None:
        return
    usable = set() if pure_forced() else usable_compiled()[0]
    recorded = {str(m) for m in read_record()["modules"]}
    _finder = _PureFinder((set(CANDIDATES) | recorded) - usable)
    sys.meta_path.insert(0, _finder)


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from an extension module (a compiled build)."""
    file = getattr(module, "__file__", None) or ""
    return file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def build_info() -> dict[str, Any]:
    """Which build is running: ``build`` (``"compiled"`` when at least one module is
    compiled, else ``"pure"``), the ``compiled`` and ``pure`` candidates as actually
    imported, the ``stale`` ones, whether ``TICKLINE_PURE`` forced pure, and the compiler."""
    compiled: list[str] = []
    pure: list[str] = []
    for name in CANDIDATES:
        module = sys.modules.get(name) or importlib.import_module(name)
        (compiled if is_compiled(module) else pure).append(name)
    record = read_record()
    return {
        "build": "compiled" if compiled else "pure",
        "compiled": compiled,
        "pure": pure,
        "stale": sorted(usable_compiled()[1]),
        "pure_forced": pure_forced(),
        "compiler": record.get("compiler", "") if compiled else "",
    }


def describe() -> str:
    """One line for ``tickline --version`` and benchmark output."""
    info = build_info()
    if info["build"] == "pure":
        why = (" (TICKLINE_PURE set)" if info["pure_forced"]
               else f" (stale: {', '.join(info['stale'])})" if info["stale"] else "")
        return f"pure Python{why}"
    short = [m.removeprefix("tickline.") for m in info["compiled"]]
    return f"compiled ({info['compiler']}): {', '.join(short)}"


# -- building (the Makefile's ``compiled``/``pure``/``auto`` targets) ---------------------

def compiler_available() -> bool:
    """Whether the C compiler Python was built with (``CC``) is on ``PATH``."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def compile_targets() -> tuple[list[str], dict[str, str]]:
    """``(modules to compile, skipped module -> reason)``."""
    targets: list[str] = []
    skipped: dict[str, str] = {}
    for name in CANDIDATES:
        path = source_path(name)
        if not path.exists():
            skipped[name] = "no source"
        elif defines_struct(path):
            skipped[name] = "defines a msgspec Struct (mypyc would drop its class keywords)"
        else:
            targets.append(name)
    return targets, skipped


def extension_files() -> list[Path]:
    """Every compiled artefact in the source tree: the modules' and mypyc's runtime
    library (``*__mypyc*``)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    out = [p for p in PACKAGE_DIR.rglob("*") if p.name.endswith(suffixes)]
    out += [p for p in PACKAGE_DIR.parent.glob("*__mypyc*") if p.name.endswith(suffixes)]
    return sorted(out)


def clean() -> None:
    """Back to the pure build: delete compiled modules and the build record."""
    for path in extension_files():
        path.unlink()
    RECORD.unlink(missing_ok=True)


def write_record(modules: Sequence[str]) -> None:
    """Record the compiler and the source hash of every module just compiled."""
    import mypy.version

    record = {
        "compiler": f"mypyc {mypy.version.__version__}",
        "modules": {name: source_hash(source_path(name)) for name in modules},
    }
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def compile_modules() -> int:
    """Compile every target with mypyc in place (``setup.py build_ext --inplace`` with
    ``TICKLINE_COMPILE`` naming them) and write the record. Returns the exit status."""
    root = PACKAGE_DIR.parent.parent
    if not (root / "setup.py").exists():
        print("tickline: not a source checkout (no setup.py); nothing to compile")
        return 1
    targets, skipped = compile_targets()
    for name, why in skipped.items():
        print(f"tickline: {name} stays pure: {why}")
    clean()
    if not targets:
        print("tickline: no module to compile; the pure build is in use")
        return 0
    env = dict(os.environ, TICKLINE_COMPILE=",".join(targets))
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                          cwd=root, env=env, check=False)
    if done.returncode != 0:
        clean()
        print("tickline: compilation failed; the pure build is in use")
        return done.returncode
    write_record(targets)
    print(f"tickline: compiled {', '.join(targets)}")
    return 0


def auto() -> int:
    """``make demo``/``make test``: compile when a C compiler and mypyc are there and the
    build is missing or stale; otherwise keep (or fall back to) the pure build. Never fails:
    the pure build always works."""
    targets, _ = compile_targets()
    usable, stale = usable_compiled()
    if targets and set(targets) == usable and not stale:
        return 0  # up to date
    if not compiler_available() or importlib.util.find_spec("mypyc") is None:
        clean()
        print("tickline: no C compiler or mypyc; using the pure-Python build")
        return 0
    if compile_modules() != 0:
        clean()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    what = args[0] if args else "status"
    if what == "compile":
        return compile_modules()
    if what == "auto":
        return auto()
    if what == "clean":
        clean()
        print("tickline: pure-Python build")
        return 0
    if what == "status":
        print(describe())
        return 0
    print("usage: python -m tickline._build compile|auto|clean|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
