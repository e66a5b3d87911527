"""The package's shape: what may import what, and no method named outside inspector/core/methods.

The method-name rule is checked by an AST walk (this file): no string constant anywhere in
inspector/ outside inspector/core/methods equals a method's name or label (case-insensitive), so
no comparison, membership test, dict key or default can single a method out.  The same walk over
the methods' own folder must find them, which shows the walk works.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inspector"
METHODS = PACKAGE / "core" / "methods"


def _loaded_after(code: str) -> set:
    """The top-level modules loaded by a fresh interpreter running ``code`` (from this checkout)."""
    script = f"import sys\n{code}\nimport json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _all_modules(package: str) -> str:
    """Code that imports every module of ``package`` (a folder under inspector/)."""
    folder = ROOT / package.replace(".", "/")
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in sorted(folder.rglob("*.py"))]
    return "\n".join(f"import {n.removesuffix('.__init__')}" for n in names)


def test_the_engine_and_the_project_never_import_qt():
    """Every module of core, project, reports and research, imported in one fresh interpreter."""
    loaded = _loaded_after("\n".join(_all_modules(p) for p in ("inspector.core", "inspector.project",
                                                                 "inspector.reports", "inspector.research")))
    assert {"torch", "faiss", "inspector"} <= loaded            # it did import the heavy parts
    assert "PySide6" not in loaded and "shiboken6" not in loaded


def test_the_command_lines_parser_and_help_do_not_import_torch():
    loaded = _loaded_after("from inspector.cli import build_parser\nbuild_parser()")
    assert "inspector" in loaded and not {"torch", "torchvision", "PySide6", "sklearn"} & loaded
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "inspector", "--help"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=600)
    assert out.returncode == 0 and "usage: inspector" in out.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "inspector" in imported and "torch" not in imported


def test_the_catalog_and_the_application_window_do_not_import_torch():
    """The wizard reads the catalog, the backbones and the threshold rules in the GUI's process."""
    loaded = _loaded_after("from inspector.core.methods import catalog\n"
                           "[(m.main_specs(), m.option_specs()) for m in catalog.methods()]\n"
                           "import inspector.gui.main_window, inspector.gui.wizard")
    assert "PySide6" in loaded and not {"torch", "torchvision", "sklearn", "faiss"} & loaded


def _imports(path: Path):
    """(level, absolute-or-relative module) of every import in a file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name


def _resolve(path: Path, level: int, module: str) -> str:
    if level == 0:
        return module
    base = list(path.relative_to(ROOT).with_suffix("").parts)[:-level]
    return ".".join(base + ([module] if module else []))


def test_no_upward_imports():
    """core imports nothing above it; project nothing of the GUI, the CLI or the research tools."""
    above = {"core": ("inspector.project", "inspector.gui", "inspector.reports", "inspector.research",
                      "inspector.cli"),
             "project": ("inspector.gui", "inspector.research", "inspector.cli"),
             "research": ("inspector.gui", "inspector.cli")}
    bad = []
    for part, forbidden in above.items():
        for f in (PACKAGE / part).rglob("*.py"):
            for level, module in _imports(f):
                target = _resolve(f, level, module)
                if target.startswith(forbidden):
                    bad.append(f"{f.relative_to(ROOT)} imports {target}")
    assert bad == []


def _method_words():
    sys.path.insert(0, str(ROOT))
    from inspector.core.methods import catalog
    return {w.lower() for m in catalog.methods() for w in (m.name, m.label)}


def _named(paths, words):
    found = []
    for f in paths:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip().lower() in words:
                found.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return found


def test_no_method_is_named_outside_the_methods_folder():
    words = _method_words()
    assert {"patchcore", "npad", "apc", "n-pad"} <= words
    outside = [f for f in PACKAGE.rglob("*.py") if METHODS not in f.parents]
    assert _named(outside, words) == []
    inside = _named(METHODS.rglob("*.py"), words)           # the walk does find them where they belong
    assert any("patchcore_options.py" in n for n in inside) and any("apc_options.py" in n for n in inside)
