"""The optional compiled build (issue 13 item 2): which modules may be compiled, which are
imported (``TICKLINE_PURE``, stale build records), what ``tickline --version`` says, and
that both builds write the same journal and wire bytes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tickline import _build
from tickline.cli import app
from tickline.matching.engine import MatchingEngine
from tickline.matching.risk import RiskControls

ROOT = Path(__file__).resolve().parents[2]


def test_a_module_defining_a_struct_is_never_a_compile_target(tmp_path: Path) -> None:
    assert _build.defines_struct(_build.source_path("tickline.matching.commands"))
    assert _build.defines_struct(_build.source_path("tickline.matching.events"))
    plain = tmp_path / "plain.py"
    plain.write_text("class A:\n    __slots__ = ('x',)\n")
    assert not _build.defines_struct(plain)
    bare = tmp_path / "bare.py"
    bare.write_text("from msgspec import Struct\nclass B(Struct, tag=1):\n    x: int\n")
    assert _build.defines_struct(bare)
    targets, skipped = _build.compile_targets()
    assert set(targets) | set(skipped) == set(_build.CANDIDATES)
    for name in targets:
        assert not _build.defines_struct(_build.source_path(name))


def test_a_stale_build_record_keeps_the_changed_module_pure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    record = tmp_path / "_compiled.json"
    monkeypatch.setattr(_build, "RECORD", record)
    monkeypatch.setattr(_build, "source_path", lambda name: src)
    assert _build.usable_compiled() == (set(), set())  # no record: nothing compiled is used
    record.write_text(json.dumps({"compiler": "mypyc", "modules": {
        "tickline.fake": _build.source_hash(src)}}))
    assert _build.usable_compiled() == ({"tickline.fake"}, set())
    src.write_text("X = 2\n")  # the source changed after the build
    assert _build.usable_compiled() == (set(), {"tickline.fake"})
    other = tmp_path / "other.py"
    other.write_text("Y = 1\n")
    monkeypatch.setattr(_build, "source_path",
                        lambda name: other if name == "tickline.other" else src)
    record.write_text(json.dumps({"compiler": "mypyc", "modules": {
        "tickline.fake": "0" * 64, "tickline.other": _build.source_hash(other)}}))
    # one stale module of the group makes the whole group unusable (mypyc groups)
    assert _build.usable_compiled() == (set(), {"tickline.fake"})
    record.write_text("not json")
    assert _build.usable_compiled() == (set(), set())


def test_the_pure_finder_loads_the_source_file() -> None:
    finder = _build._PureFinder({"tickline.matching.book"})
    spec = finder.find_spec("tickline.matching.book")
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith("book.py")
    assert finder.find_spec("tickline.matching.engine") is None


def _child(code: str, pure: bool) -> str:
    env = dict(os.environ)
    env.pop("TICKLINE_PURE", None)
    if pure:
        env["TICKLINE_PURE"] = "1"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT)
    return done.stdout.strip().splitlines()[-1]


def test_tickline_pure_forces_every_candidate_to_its_source() -> None:
    code = ("import json, tickline._build as b; i = b.build_info(); "
            "print(json.dumps([i['build'], i['compiled'], i['pure_forced']]))")
    build, compiled, forced = json.loads(_child(code, pure=True))
    assert (build, compiled, forced) == ("pure", [], True)
    default = json.loads(_child(code, pure=False))
    assert default[2] is False
    usable, _stale = _build.usable_compiled()
    assert set(default[1]) == usable & set(_build.CANDIDATES)  # compiled iff built and current


def test_version_names_the_build() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tickline 0.1.0, ")
    info = _build.build_info()
    if info["build"] == "pure":
        assert "pure Python" in result.output
    else:
        assert "compiled (mypyc" in result.output
        for name in info["compiled"]:
            assert name.removeprefix("tickline.") in result.output


def test_both_builds_write_the_same_journal_and_wire_bytes() -> None:
    """The same stream (stops and icebergs included) under the default build and with
    TICKLINE_PURE=1: identical encoded commands, events, snapshot and frames, same books.
    (With no compiled build present both runs are pure; ``make test`` builds it first.)"""
    code = ("import runpy; runpy.run_path('tests/build/encodings_child.py', "
            "run_name='__main__')")
    pure = json.loads(_child(code, pure=True))
    default = json.loads(_child(code, pure=False))
    assert pure["build"].startswith("pure")
    for key in ("journal", "frames", "digest"):
        assert pure[key] == default[key], key


def test_both_builds_hand_out_the_same_loop_output() -> None:
    """The whole exchange loop (stops, icebergs, session ports, a drop copy, a journal) under
    the default build and with TICKLINE_PURE=1: the same market-data messages, replies,
    unsolicited reports and journal bytes. The compiled release path passes the commands'
    and events' own int objects on (``Any``) where the interpreted one reads attributes: the
    bytes must not tell them apart."""
    code = ("import runpy; runpy.run_path('tests/build/loop_child.py', "
            "run_name='__main__')")
    pure = json.loads(_child(code, pure=True))
    default = json.loads(_child(code, pure=False))
    assert pure["build"].startswith("pure")
    assert pure["counts"]["unsolicited"] > 0 and pure["counts"]["messages"] > 0
    for key in ("market", "replies", "unsolicited", "journal", "counts"):
        assert pure[key] == default[key], key


def test_a_changed_source_never_runs_its_stale_compiled_module(tmp_path: Path) -> None:
    """Only with a compiled build present (``make test`` builds it): copy the tree, change
    one compiled module's source, and the copy imports every candidate from source."""
    if not _build.usable_compiled()[0]:
        pytest.skip("no current compiled build")
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src", copy)
    book = copy / "tickline" / "matching" / "book.py"
    book.write_text(book.read_text() + "\n# changed after the build\n")
    code = ("import json, tickline._build as b; i = b.build_info(); "
            "print(json.dumps([i['build'], i['stale']]))")
    env = dict(os.environ, PYTHONPATH=str(copy))
    env.pop("TICKLINE_PURE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    build, stale = json.loads(done.stdout.strip().splitlines()[-1])
    assert (build, stale) == ("pure", ["tickline.matching.book"])


def _stub_methods(path: Path, class_name: str) -> list[str]:
    """Methods of ``class_name`` whose body (after a docstring) is only
    ``raise NotImplementedError``: what the class declares for a subclass to provide."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    stubs = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            body = [s for s in node.body
                    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None
                    and "NotImplementedError" in ast.unparse(body[0].exc)):
                stubs.append(node.name)
    return stubs


def test_the_engine_provides_every_method_its_risk_mixin_declares() -> None:
    # RiskControls declares what it uses of the engine as real stub methods (mypyc rejects
    # declarations under ``if TYPE_CHECKING:`` in a class body); every one must be
    # overridden, in both builds, or a risk path would raise NotImplementedError.
    stubs = _stub_methods(_build.source_path("tickline.matching.risk"), "RiskControls")
    assert {"_cancel_rest", "_protect", "_reject"} <= set(stubs)
    for name in stubs:
        assert getattr(MatchingEngine, name) is not getattr(RiskControls, name), name
    engine = MatchingEngine([])
    assert engine.books == {} and engine.orders == {}  # the declared attributes are set


def test_the_move_fast_path_knows_which_build_runs_it() -> None:
    """replace.COMPILED picks how the move fast path reads a command's fields (astuple
    compiled, attributes interpreted); both builds pass the same tests, and the encodings
    test above checks they emit the same bytes."""
    from tickline.matching import replace

    compiled = "tickline.matching.replace" in _build.build_info()["compiled"]
    assert replace.COMPILED is compiled
