"""What the wheel ships is enough: ``creatorpulse bench`` and the Kafka fetch outside a checkout.

The copy holds exactly what pyproject.toml lists for the wheel (each package's modules and
its package data), in a directory with no ``deploy/`` next to it, as site-packages would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _installed_copy(site: Path) -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = setuptools.get("package-data", {})
    for package in setuptools["packages"]:
        source = ROOT.joinpath(*package.split("."))
        target = site.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for pattern in ("*.py", *data.get(package, ())):
            for path in source.glob(pattern):
                if not path.is_file():  # setuptools' globs take files only
                    continue
                # Where the package holds it (static/vendor/...), a link's target as a
                # wheel holds it.
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / path.relative_to(source))


def _run(args: list[str], site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CREATORPULSE_")}
    clean.pop("XDG_CACHE_HOME", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(site), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site-packages")
    _installed_copy(site)
    return site


def test_bench_help_runs_from_an_installed_copy(site: Path, tmp_path: Path) -> None:
    out = _run(["-m", "creatorpulse.bench", "--help"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "usage: creatorpulse bench" in out.stdout


def test_the_broker_module_finds_its_pom_and_caches_outside_the_package(
    site: Path, tmp_path: Path
) -> None:
    probe = (
        "import json, creatorpulse, creatorpulse.bench.sections\n"
        "from creatorpulse.brokers.apache import POM, default_cache_dir\n"
        "print(json.dumps({'package': creatorpulse.__file__, 'pom': str(POM),"
        " 'pom_is_file': POM.is_file(), 'cache': str(default_cache_dir())}))\n"
    )
    out = _run(["-c", probe], site, tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert Path(found["package"]).is_relative_to(site)  # the copy, not the checkout
    assert Path(found["pom"]).is_relative_to(site)
    assert found["pom_is_file"]
    assert Path(found["cache"]) == tmp_path / "xdg" / "creatorpulse" / "kafka"


def test_an_installed_copy_ships_the_kafka_streams_project(site: Path, tmp_path: Path) -> None:
    probe = (
        "import json\n"
        "from creatorpulse.bench.kafka_streams import PROJECT, sources\n"
        "names = [p.name for p in sources() if p.is_file()]\n"
        "print(json.dumps({'project': str(PROJECT), 'sources': names}))\n"
    )
    out = _run(["-c", probe], site, tmp_path)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert Path(found["project"]).is_relative_to(site)
    assert found["sources"] == ["pom.xml", "WindowTotals.java"]


@pytest.mark.skipif(shutil.which("mvn") is None, reason="fetching the jars needs Maven")
def test_an_installed_copy_fetches_the_kafka_jars(site: Path, tmp_path: Path) -> None:
    out = _run(
        ["-m", "creatorpulse.brokers.apache", "fetch"],
        site,
        tmp_path,
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
    )
    assert out.returncode == 0, out.stderr
    jars = tmp_path / "xdg" / "creatorpulse" / "kafka" / "jars"
    assert str(jars) in out.stdout
    assert list(jars.glob("kafka_2.13-*.jar"))


def test_the_dashboard_page_and_its_vendored_assets_ship(site: Path) -> None:
    web = site / "creatorpulse" / "web"
    for name in ("index.html", "app.js", "app.css", "NOTICE"):
        assert (web / "static" / name).is_file(), name
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"):
        assert (web / "static" / "vendor" / name).is_file(), name
    page = (web / "static" / "index.html").read_text()
    # Every asset the page loads is in the copy.
    for src in ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "app.js", "app.css"):
        assert f"/static/dashboard/{src}" in page
