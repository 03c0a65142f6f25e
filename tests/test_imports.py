"""The layering of app/: no import cycle anywhere, app/ml free of the app, and a web process
that never imports torch.

The cycle check reads every module with the ast module and follows every import, those inside
function bodies included (a cycle hidden in a function body is a cycle all the same: it only
waits for the first call to bite).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.parts}


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(path: Path, known: set[str], package: str = "") -> set[str]:
    """The app modules a file imports, anywhere in it (`from app.web import api` counts as
    app.web.api when that is a module); `package` resolves relative imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level-1 parents
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    out = {}
    for name, path in mods.items():
        # a package's own __init__ is on the way to any of its modules: not an edge of interest
        found = imports_of(path, known, package_of(path))
        out[name] = {m for m in found if m not in (name, "app")}
    return out


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_hidden_in_a_function_body(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def later():\n    from app.web import pages\n")
    assert imports_of(a, {"app.web.pages", "app.web"}) == {"app.web", "app.web.pages"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_app_has_no_import_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_engine_imports_nothing_of_the_app_outside_app_ml():
    for name, deps in graph().items():
        if name.startswith("app.ml"):
            outside = {d for d in deps if not d.startswith("app.ml")}
            assert not outside, f"{name} imports {outside}"


def test_the_domain_below_the_web_never_imports_it():
    for name, deps in graph().items():
        if not name.startswith("app.web") and name not in ("app.cli", "app.__main__"):
            web = {d for d in deps if d.startswith("app.web")}
            assert not web, f"{name} imports {web}"


def test_the_web_process_never_imports_torch(tmp_path):
    """Build the app, serve every kind of page in process, and look: torch (seconds to import,
    and the GIL's worst neighbour) stays in the worker processes."""
    script = """
import sys
from fastapi.testclient import TestClient
from app.settings import Settings
from app.web.main import create_app
settings = Settings(data_dir=sys.argv[1], workers=1)
with TestClient(create_app(settings)) as c:
    exp = c.post("/api/experiments", json={"dataset": {"n_train": 50}, "model": {"hidden": [8]},
                                           "train": {"epochs": 2}}).json()["id"]
    for url in ["/", f"/e/{exp}", f"/e/{exp}.json", "/scenarios", "/rooms/new", "/compare",
                f"/api/experiments/{exp}/metrics.csv", "/partials/recent"]:
        assert c.get(url).status_code == 200, url
    code = c.post("/rooms", follow_redirects=False).headers["location"].split("/")[2]
    assert c.get(f"/api/rooms/{code}").status_code == 200
print("torch" in sys.modules, [m for m in sys.modules if m.startswith("torch")][:3])
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("False"), out.stdout
