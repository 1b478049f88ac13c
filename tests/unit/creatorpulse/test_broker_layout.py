"""Where the broker module finds its Maven pom and puts the jars, in a checkout and installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from creatorpulse.brokers import apache

ROOT = Path(__file__).resolve().parents[3]
TOP_LEVEL_PACKAGES = ("creatorpulse", "schemas", "producers", "streams", "sinks")


def _setuptools() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"])


def test_the_pom_has_one_home_inside_the_package() -> None:
    assert apache.POM.parent == Path(apache.__file__).resolve().parent
    assert apache.POM.is_file()
    # deploy/kafka keeps the pom for reading and running Maven by hand, as a link.
    assert (ROOT / "deploy" / "kafka" / "pom.xml").resolve() == apache.POM
    package_data = _setuptools()["package-data"]
    assert isinstance(package_data, dict)
    assert "pom.xml" in package_data["creatorpulse.brokers"]


def test_every_package_directory_is_listed_for_the_wheel() -> None:
    # An unlisted subpackage is left out of the wheel: `creatorpulse bench` would then work
    # from a checkout only.
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL_PACKAGES
        for init in (ROOT / top).rglob("__init__.py")
    }
    listed = _setuptools()["packages"]
    assert isinstance(listed, list)
    assert on_disk <= set(listed)


def test_the_cache_variable_wins(tmp_path: Path) -> None:
    env = {"CREATORPULSE_KAFKA_CACHE": str(tmp_path / "jars-here")}
    assert apache.default_cache_dir(env, apache.HERE) == tmp_path / "jars-here"


def test_a_checkout_caches_under_deploy_kafka() -> None:
    assert apache.default_cache_dir({}, apache.HERE) == ROOT / "deploy" / "kafka" / ".cache"


def test_an_installed_package_caches_outside_site_packages(tmp_path: Path) -> None:
    package_dir = tmp_path / "site-packages" / "creatorpulse" / "brokers"
    package_dir.mkdir(parents=True)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert apache.default_cache_dir(env, package_dir) == tmp_path / "xdg" / "creatorpulse" / "kafka"
    home_cache = apache.default_cache_dir({}, package_dir)
    assert home_cache == Path.home() / ".cache" / "creatorpulse" / "kafka"
