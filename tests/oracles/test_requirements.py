"""Each oracle type declares the code it needs; missing code stops before any labelling."""

from __future__ import annotations

import subprocess
import sys
import typing

import ase.io
import pytest

from mlff.errors import ConfigError
from mlff.oracles import load_oracle, load_oracle_config
from mlff.oracles.config import OracleType
from mlff.oracles.requirements import REQUIRED_CODE, Requirement, binary, check_required_code
from tests import helpers


def test_every_oracle_type_declares_its_code():
    assert set(typing.get_args(OracleType)) <= set(REQUIRED_CODE)


def test_installed_code_passes_and_is_listed_on_the_config():
    config = load_oracle_config({"type": "tblite"})
    assert [r.name for r in config.required_code] == ["tblite.ase"]
    check_required_code(config)  # tblite is installed here


@pytest.mark.parametrize(("oracle", "blocked", "extra"),
                         [("tblite", "tblite", "xtb"), ("pyscf", "pyscf", "pyscf")])
def test_a_missing_module_names_the_install_command(monkeypatch, oracle, blocked, extra):
    for name in [m for m in sys.modules if m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now fails
    with pytest.raises(ConfigError, match=rf"Python module {blocked}.*pip install '\.\[{extra}\]'"):
        load_oracle({"type": oracle})


def test_binaries_are_found_on_path():
    assert binary("sh -c true", "apt-get install dash").is_available()
    missing = Requirement("binary", "mlff-no-such-program", "build it")
    assert not missing.is_available() and missing.describe() == "the program mlff-no-such-program"


def test_label_stops_before_any_frame_with_the_install_command(tmp_path):
    structures = tmp_path / "frames.xyz"
    ase.io.write(structures, [helpers.water(), helpers.ethanol()], format="extxyz")
    oracle = tmp_path / "xtb.yaml"
    oracle.write_text("type: tblite\n")
    out = tmp_path / "labels.db"
    # a Python in which tblite cannot be imported, as on a machine without it
    code = ("import sys; sys.modules['tblite'] = None; from mlff.cli.main import main; "
            f"sys.exit(main(['label', {str(structures)!r}, '--oracle', {str(oracle)!r}, "
            f"'--out', {str(out)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install '.[xtb]'" in result.stderr and "tblite.ase" in result.stderr
    assert not out.exists()  # no store, no frame spent
