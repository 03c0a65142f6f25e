"""Vendor the front-end libraries from npm into static/vendor/ (package data of the wheel),
and the tests' own (axe-core) into tests/vendor/, which no wheel ships.

    python scripts/vendor_assets.py          # after changing package.json (make vendor)
    python scripts/vendor_assets.py --check  # the committed files match the lockfile

The server never needs Node: the files it serves are committed under static/vendor/, with
pre-compressed twins (`.gz`, `.br`) beside the large ones and `vendor.json` saying where each
came from (tests/vendor/vendor.json likewise for the tests' files, which get no twins). They
are never copied by hand. For every package below this script takes the
version and integrity from package-lock.json, gets that tarball with `npm pack` (npm's cache
answers after an `npm ci`), checks the tarball's sha512 against the lockfile's integrity, and
extracts the listed files from the tarball itself. `--check` (run by the tests, no Node
needed) verifies that every vendored file and twin still matches vendor.json and that
vendor.json names the lockfile's versions and integrities.

Updating a library: `npm install --package-lock-only --save-exact --ignore-scripts NAME@VER`,
then `make vendor`, then commit package.json, package-lock.json and static/vendor/.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "static" / "vendor"
MANIFEST = VENDOR / "vendor.json"
TEST_VENDOR = ROOT / "tests" / "vendor"  # for the tests only: not package data
LOCKFILE = ROOT / "package-lock.json"

# npm package -> {file in its tarball (under package/): where it goes under static/vendor/}.
# Plotly: the cartesian partial bundle has every trace the pages draw (scatter, heatmap,
# contour) at a third of the full bundle's size.
PACKAGES: dict[str, dict[str, str]] = {
    "htmx.org": {
        "dist/htmx.min.js": "htmx.min.js",
        "LICENSE": "licenses/htmx.org.txt",
    },
    "plotly.js-cartesian-dist-min": {
        "plotly-cartesian.min.js": "plotly-cartesian.min.js",
        "LICENSE": "licenses/plotly.js.txt",
    },
    "swagger-ui-dist": {  # /docs
        "swagger-ui-bundle.js": "swagger-ui/swagger-ui-bundle.js",
        "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
        "swagger-ui.css": "swagger-ui/swagger-ui.css",
        "LICENSE": "licenses/swagger-ui.txt",
        "NOTICE": "licenses/swagger-ui-NOTICE.txt",
    },
    "redoc": {  # /redoc
        "bundles/redoc.standalone.js": "redoc/redoc.standalone.js",
        "bundles/redoc.standalone.js.LICENSE.txt": "redoc/redoc.standalone.js.LICENSE.txt",
        "LICENSE": "licenses/redoc.txt",
    },
}
# The tests' libraries (package.json devDependencies), under tests/vendor/: axe-core, the
# accessibility checker the browser tests inject into every page (tests/web/test_browser_a11y.py).
TEST_PACKAGES: dict[str, dict[str, str]] = {
    "axe-core": {
        "axe.min.js": "axe-core/axe.min.js",
        "LICENSE": "licenses/axe-core.txt",
    },
}
COMPRESSED = (".js", ".css")  # these get .gz and .br twins, served as is (app/web/assets.py)
# (folder, its packages, whether its files get compressed twins)
TARGETS = [(VENDOR, PACKAGES, True), (TEST_VENDOR, TEST_PACKAGES, False)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def locked(name: str) -> dict:
    """The lockfile's entry for a top-level package: version and integrity."""
    entry = json.loads(LOCKFILE.read_text())["packages"].get(f"node_modules/{name}")
    if not entry or "integrity" not in entry:
        raise SystemExit(f"{name} is not in package-lock.json: npm install --package-lock-only")
    return entry


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def tarball(name: str, version: str, workdir: Path) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("vendoring needs npm (serving does not: static/vendor/ is committed)")
    out = subprocess.run([npm, "pack", f"{name}@{version}", "--json", "--ignore-scripts",
                          "--pack-destination", str(workdir)],
                         capture_output=True, text=True, check=True)
    return (workdir / json.loads(out.stdout)[0]["filename"]).read_bytes()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)  # mtime 0: the same bytes every time


def brotli_bytes(data: bytes) -> bytes:
    import brotli

    return brotli.compress(data, quality=11)


def vendor() -> None:
    for folder, packages, twins in TARGETS:
        vendor_into(folder, packages, twins)


def vendor_into(folder: Path, packages: dict[str, dict[str, str]], twins: bool) -> dict:
    manifest: dict = {"packages": {}}
    if folder.exists():
        for old in folder.rglob("*"):
            if old.is_file():
                old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in packages.items():
            entry = locked(name)
            data = tarball(name, entry["version"], Path(tmp))
            if integrity_of(data) != entry["integrity"]:
                raise SystemExit(f"{name}@{entry['version']}: the tarball's sha512 is not the "
                                 "lockfile's integrity; refusing to vendor it")
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                record = {}
                for source, dest in files.items():
                    member = members.get(f"package/{source}")
                    if member is None:
                        raise SystemExit(f"{name}@{entry['version']} has no {source}")
                    body = tar.extractfile(member).read()
                    record[dest] = write(folder / dest, body, twins)
                    record[dest]["from"] = source
            manifest["packages"][name] = {"version": entry["version"],
                                          "integrity": entry["integrity"], "files": record}
            print(f"{name}@{entry['version']}: integrity ok, {len(files)} files")
    (folder / "vendor.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write(path: Path, body: bytes, twins: bool = True) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    record = {"sha256": sha256(body), "size": len(body)}
    if twins and path.suffix in COMPRESSED:
        for suffix, compress in ((".gz", gzip_bytes), (".br", brotli_bytes)):
            twin = compress(body)
            path.with_name(path.name + suffix).write_bytes(twin)
            record[suffix[1:]] = {"sha256": sha256(twin), "size": len(twin)}
    return record


def check() -> list[str]:
    """Problems with the committed vendor files (empty: all good). Needs no Node."""
    return [p for folder, packages, _ in TARGETS for p in check_folder(folder, packages)]


def check_folder(folder: Path, packages: dict[str, dict[str, str]]) -> list[str]:
    problems = []
    manifest_path = folder / "vendor.json"
    where = folder.relative_to(ROOT).as_posix()
    if not manifest_path.exists():
        return [f"{manifest_path.relative_to(ROOT)} is missing: run scripts/vendor_assets.py"]
    manifest = json.loads(manifest_path.read_text())["packages"]
    if sorted(manifest) != sorted(packages):
        problems.append(f"{where}/vendor.json lists {sorted(manifest)}, expected "
                        f"{sorted(packages)}")
    expected = {manifest_path}
    for name, info in manifest.items():
        entry = locked(name)
        if (info["version"], info["integrity"]) != (entry["version"], entry["integrity"]):
            problems.append(f"{name}: vendored {info['version']}, lockfile has "
                            f"{entry['version']}: run scripts/vendor_assets.py")
        for dest, record in info["files"].items():
            path = folder / dest
            expected.add(path)
            if not path.exists() or sha256(path.read_bytes()) != record["sha256"]:
                problems.append(f"{where}/{dest} differs from what vendor.json recorded")
                continue
            for kind in ("gz", "br"):
                if kind not in record:
                    continue
                twin = path.with_name(f"{path.name}.{kind}")
                expected.add(twin)
                if not twin.exists() or sha256(twin.read_bytes()) != record[kind]["sha256"]:
                    problems.append(f"{where}/{dest}.{kind} is missing or changed")
    strays = [p for p in folder.rglob("*") if p.is_file() and p not in expected]
    problems += [f"{where}/{p.relative_to(folder)} is not from vendor.json" for p in strays]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="verify the committed files against vendor.json and the lockfile")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    vendor()
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
