"""The wheel alone, as a user gets it (`make test-install`; CI runs it).

Builds the wheel from the repository's files (tracked, and new ones not ignored), installs
torch's CPU build and then the wheel into a new virtualenv outside the repository, and starts
`dropout-playground serve` from an empty folder with nothing but that virtualenv on PATH (so no
`node`). Then: every page and every file it links answers (the ES modules' imports followed
too), an experiment runs to done through the API and through `dropout-playground submit`, the
pages draw in Chromium with no console error, and the README's Python example runs from a
folder that holds an `app.py` of its own. About two minutes, most of it pip.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from email.message import Message
from pathlib import Path

import pytest

pytestmark = pytest.mark.install
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TINY = {"dataset": {"name": "moons", "n_train": 60}, "model": {"hidden": [8]},
        "train": {"epochs": 3, "batch_size": 16}, "sweep": {"dropout": [0.0, 0.5]}}


def sh(*args, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 600)
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def repository_files() -> list[str]:
    out = sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in repository_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src)
    (built,) = dist.glob("dropout_playground-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    home = tmp_path_factory.mktemp("venv") / "env"
    assert not home.resolve().is_relative_to(ROOT)
    sh(sys.executable, "-m", "venv", home)
    python = home / "bin" / "python"
    sh("sh", ROOT / "scripts" / "install_torch.sh", python, "-q")  # torch first, as make does
    sh(python, "-m", "pip", "install", "-q", wheel)
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory, venv):
    """`dropout-playground serve` from an empty folder, with only the venv on PATH."""
    empty = tmp_path_factory.mktemp("empty")
    env = {"PATH": str(venv / "bin"), "HOME": str(empty), "LANG": "C.UTF-8",
           "DP_WORKERS": "1", "DP_THREADS_PER_WORKER": "1"}
    assert shutil.which("node", path=env["PATH"]) is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("log") / "server.log").open("wb")
    proc = subprocess.Popen([venv / "bin" / "dropout-playground", "serve", "--port", str(port),
                             "--data-dir", "data"], cwd=empty, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if get_json(f"{url}/healthz")["workers_ready"]:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail(f"server did not start: {Path(log.name).read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "cwd": empty, "env": env}
    proc.terminate()
    proc.wait(20)
    assert sorted(p.name for p in empty.iterdir()) == ["data"]  # nothing else written there


def get(url: str, encoding: str = "br, gzip") -> tuple[int, Message, bytes]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, res.headers, res.read()  # headers: case-insensitive


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as res:
        return json.loads(res.read())


def decode(headers: Message, body: bytes) -> bytes:
    encoding = headers.get("Content-Encoding")
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return gzip.decompress(body) if encoding == "gzip" else body


def run_experiment(url: str) -> str:
    req = urllib.request.Request(f"{url}/api/experiments", data=json.dumps(TINY).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 201
        exp_id = json.loads(res.read())["id"]
    deadline = time.monotonic() + 120
    while (status := get_json(f"{url}/api/experiments/{exp_id}")["status"]) not in (
            "done", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status == "done"
    return exp_id


def test_the_wheel_carries_templates_static_files_and_the_console_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "static"):
        files = [f for f in repository_files() if f.startswith(folder + "/")]
        assert files
        missing = [f for f in files if f"app/{f}" not in names]
        assert not missing, missing
    assert "dropout_playground.py" in names
    assert not any(n.startswith(("static/", "templates/", "tests/", "node_modules/"))
                   for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "dropout-playground = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert not any("plotly" in line for line in requires)
    assert wheel.stat().st_size < 8_000_000


def test_every_page_and_every_file_it_links_answers(server):
    url = server["url"]
    exp_id = run_experiment(url)
    pages = ["/", f"/e/{exp_id}", f"/compare?ids={exp_id}", "/scenarios", "/rooms/new",
             "/docs", "/redoc", f"/e/{exp_id}.json", "/openapi.json"]
    queue, seen = [], set()
    for page in pages:
        status, headers, body = get(url + page)
        assert status == 200, page
        text = decode(headers, body).decode()
        queue += re.findall(r'(?:src|href)="(/static/[^"]+)"', text)
    assert len(set(queue)) >= 15
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        status, headers, body = get(url + path)
        assert status == 200, path
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable", path
        text = decode(headers, body)
        if path.endswith(".js"):  # an ES module's imports are files to load too
            base = path.rsplit("/", 1)[0]
            queue += [f"{base}/{spec[2:]}" for spec in
                      re.findall(rb'from "(\./[^"]+)"', text) for spec in [spec.decode()]]
    assert any("plotly-cartesian" in p for p in seen) and any("htmx" in p for p in seen)
    assert any("swagger-ui-bundle" in p for p in seen) and any("redoc" in p for p in seen)


def test_submit_from_the_console_script(server, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    proc = subprocess.run([str(Path(server["env"]["PATH"]) / "dropout-playground"), "submit",
                           "--server", server["url"], str(config)], cwd=server["cwd"],
                          env=server["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(server["url"] + "/e/")


def test_the_pages_draw_in_a_browser_with_no_console_error(server):
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    url = server["url"]
    exp_id = run_experiment(url)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        for path in ("/", "/docs", f"/e/{exp_id}"):
            page.goto(url + path)
        page.wait_for_selector("[data-chart] .main-svg", timeout=30_000)  # Plotly drew
        browser.close()
    assert errors == []


def test_the_readme_example_runs_from_a_folder_holding_an_app_py(venv, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python (notebooks)", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))
    assert "import dropout_playground" in code
    (tmp_path / "app.py").write_text('raise SystemExit("the folder\'s own app.py was imported")\n')
    (tmp_path / "example.py").write_text(code)
    proc = subprocess.run([str(venv / "bin" / "python"), "example.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": str(venv / "bin"), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    *_, last_row, best = proc.stdout.strip().splitlines()
    assert "'epoch': 20" in last_row and best in ("0.0", "0.5")
    # and `python -m app` still works where no app.py is in the way
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    sh(venv / "bin" / "python", "-m", "app", "--help", cwd=empty)
