"""The architecture is enforced, not described: the import contracts in pyproject.toml hold, a module
that breaks one is caught, and no two modules import each other (directly or through others)."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chassis", "clients", "services")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold():
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "5 kept, 0 broken" in checked.stdout


def test_a_module_that_breaks_a_contract_is_caught(tmp_path):
    """A copy of the code with one planted import: the chassis reaching into a service."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "chassis" / "planted.py").write_text("from services.billing import domain  # noqa\n")
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0
    assert "The chassis and the clients import no service BROKEN" in " ".join(checked.stdout.split())
    assert "chassis.planted -> services.billing.domain" in checked.stdout


def test_product_code_that_imports_the_benchmark_is_caught(tmp_path):
    """The benchmark and make dev's tooling drive the product from outside; nothing shipped needs them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "services" / "gateway" / "planted.py").write_text("from bench import report  # noqa\n")
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0
    assert "The product imports neither the benchmark nor the development and deployment tooling BROKEN" in " ".join(
        checked.stdout.split()
    )
    assert "services.gateway.planted -> bench" in checked.stdout


def test_no_two_modules_import_each_other():
    graph = grimp.build_graph(*PACKAGES)
    circles = {
        tuple(sorted((importer, imported)))
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer != imported and graph.find_shortest_chain(importer=imported, imported=importer)
    }
    assert circles == set()
