"""Docs are part of the feature: the README must name every setting, every dataset and every
benchmark (whose figures are in docs/benchmarks.md)."""

from pathlib import Path

from app.ml.datasets import CATALOG
from app.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [f"DP_{name.upper()}" for name in Settings.model_fields
               if f"`DP_{name.upper()}`" not in README]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_every_dataset_is_documented_with_its_size_limit():
    for name, info in CATALOG.items():
        assert name in README, name
        if not info.synthetic:
            assert f"at most {info.max_train} training examples" in README, name


def test_readme_gives_the_two_setup_commands():
    assert "make serve" in README and "make test" in README


def test_every_api_operation_is_in_the_api_reference(tmp_path):
    from app.web.main import create_app

    reference = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    paths = create_app(Settings(data_dir=tmp_path)).openapi()["paths"]
    missing = [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops
               if f"`{method.upper()} {path}" not in reference]
    assert not missing, f"operations missing from docs/api.md: {missing}"
    assert "docs/api.md" in README


def test_every_benchmark_is_documented_with_its_figures():
    root = Path(__file__).resolve().parents[1]
    figures = (root / "docs" / "benchmarks.md").read_text()
    assert "docs/benchmarks.md" in README
    missing = [p.name for p in sorted((root / "bench").glob("*.py"))
               if f"`bench/{p.name}`" not in figures or f"`bench/{p.name}`" not in README]
    assert not missing, f"benchmarks missing from docs/benchmarks.md or the README: {missing}"
