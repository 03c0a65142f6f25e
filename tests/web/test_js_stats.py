"""The page's one computation, static/js/stats.js meanStd, against Python's rule.

While a sweep trains, the page draws each setting's mean curve and ±1 std band itself; the
finished summary (tables, the sweep chart) comes from `app.ml.summary._mean_std`. Both must be
the same rule (sample std, n-1; 0 for one value; None/null skipped), or a band and the table
under it would disagree. This runs `node` on the module with the same values and compares.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from app.ml.summary import _mean_std

STATS = Path(__file__).resolve().parents[2] / "static" / "js" / "stats.js"
NODE = shutil.which("node")

FIXTURES = [
    [0.5],
    [1.0, 2.0, 3.0, 4.0],
    [0.31, 0.29, None, 0.35],
    [None, None],
    [],
    [0.0, 0.0, 0.0],
    [1e-9, 3e-9],
    [0.6931471805599453, 0.12, 0.4477, 0.9, 0.33333333333333331, 0.25],
    [1234.5, -1234.5, None, 7.25],
]

# meanStd of every fixture; undefined where Python has None: the page's own "not there yet"
SCRIPT = """
import { meanStd } from %s;
const fixtures = JSON.parse(process.argv[1]);
const withUndefined = (vs) => vs.map((v) => (v === null ? undefined : v));
console.log(JSON.stringify(fixtures.map((vs) => [meanStd(vs), meanStd(withUndefined(vs))])));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_mean_std_in_the_page_equals_python():
    script = SCRIPT % json.dumps(STATS.as_uri())
    out = subprocess.run([NODE, "--input-type=module", "-e", script, json.dumps(FIXTURES)],
                         capture_output=True, text=True, timeout=30, check=True)
    results = json.loads(out.stdout)
    assert len(results) == len(FIXTURES)
    for values, pair in zip(FIXTURES, results, strict=True):
        want = _mean_std(values)
        for got in pair:
            assert got["n"] == want["n"], values
            for key in ("mean", "std"):
                if want[key] is None:
                    assert got[key] is None, (values, key)
                else:
                    assert math.isclose(got[key], want[key], rel_tol=1e-12, abs_tol=1e-15), (
                        values, key, got[key], want[key])
