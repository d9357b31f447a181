"""Oracle configs: YAML and dicts, strict types, settings that belong to another type."""

from __future__ import annotations

import pytest

from mlff.errors import ConfigError
from mlff.oracles import OracleConfig, load_oracle, load_oracle_config


def test_yaml_file_and_dict_give_the_same_oracle(tmp_path):
    path = tmp_path / "oracle.yaml"
    path.write_text("type: pyscf\nxc: PBE0\nbasis: sto-3g\nconv_tol: 1.0e-10\ntimeout: 60\n"
                    "properties: [energy, forces]\n")
    from_file = load_oracle(path)
    from_dict = load_oracle({"type": "pyscf", "xc": "PBE0", "basis": "sto-3g",
                             "conv_tol": 1e-10, "timeout": 60.0,
                             "properties": ["energy", "forces"]})
    assert from_file.config == from_dict.config
    assert from_file.name == "pyscf:PBE0/sto-3g"
    assert from_file.config.timeout == 60.0 and from_file.config.max_cycle == 50
    # settings are plain JSON of this type's settings only, and rebuild the oracle
    settings = from_file.settings
    assert set(settings) == {"type", "timeout", "properties", "xc", "basis", "charge", "spin",
                             "conv_tol", "max_cycle", "max_force", "max_energy_deviation"}
    assert load_oracle(settings).config == from_file.config
    assert load_oracle_config(from_file.config) is from_file.config


def test_defaults_and_names():
    assert load_oracle({"type": "tblite"}).name == "tblite:GFN2-xTB"
    assert load_oracle({"type": "emt"}).name == "emt"
    config = OracleConfig(type="pyscf")
    assert (config.xc, config.basis, config.timeout) == ("PBE", "def2-SVP", None)
    assert config.wanted == ("energy", "forces", "stress")
    ase_oracle = load_oracle({"type": "ase", "calculator": "ase.calculators.emt:EMT"})
    assert ase_oracle.name == "ase:ase.calculators.emt:EMT"
    assert ase_oracle.versions["ase"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "tblite", "xc": "PBE"}, ["xc is not a setting of the 'tblite' oracle",
                                            "max_iterations"]),
        ({"type": "emt", "basis": "sto-3g"}, ["basis", "'emt'"]),
        ({"type": "emt", "timout": 5}, ["unknown key 'timout'", "timeout"]),
        ({"type": "dft"}, ["'type'", "dft"]),
        ({"type": "pyscf", "conv_tol": "1e-9"}, ["'conv_tol'", "write it with a dot"]),
        ({"type": "pyscf", "max_cycle": 1.5}, ["'max_cycle'"]),
        ({"type": "pyscf", "max_cycle": "50"}, ["'max_cycle'"]),  # strict: no coercion
        ({"type": "emt", "timeout": 0}, ["'timeout'"]),
        ({"type": "emt", "properties": ["forces"]}, ["must include 'energy'"]),
        ({"type": "emt", "properties": ["energy", "dipole"]}, ["'properties.1'"]),
        ({"type": "ase"}, ["needs calculator"]),
        ({"type": "ase", "calculator": "ase.calculators.emt.EMT"}, ["module.path:ClassName"]),
        ({"type": "ase", "calculator": "no_such_package.calc:Calc"},
         ["cannot import module 'no_such_package.calc'", "Install"]),
        ({"type": "ase", "calculator": "ase.calculators.emt:NoSuchCalculator"},
         ["has no class 'NoSuchCalculator'"]),
        ({"type": "ase", "calculator": "ase.calculators.lj:LennardJones",
          "kwargs": {"sigma": 1.0}}, []),  # accepted
        ({"type": "ase", "calculator": "tests.oracles.calculators:SlowCalculator",
          "kwargs": {"delay": 0.1}}, []),  # a project-local class, by path
        ({"type": "pyscf", "xc": "NOT-A-FUNCTIONAL"}, ["not a functional PySCF knows"]),
        ([1, 2], ["expected a mapping"]),
    ],
)
def test_config_errors_name_the_key(raw, expected):
    if not expected:
        load_oracle(raw)
        return
    with pytest.raises(ConfigError) as error:
        load_oracle(raw)
    for text in expected:
        assert text in str(error.value), (text, str(error.value))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such oracle config file"):
        load_oracle(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: [emt\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_oracle(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("type: emt\nbasis: sto-3g\n")
    with pytest.raises(ConfigError, match="wrong.yaml"):
        load_oracle(wrong)


def test_every_oracle_example_in_the_docs_loads():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "oracles.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    assert len(blocks) >= 7
    types = set()
    for block in blocks:
        oracle = load_oracle(block)  # imports the class and checks its kwargs
        types.add(oracle.config.type)
    assert types == {"emt", "tblite", "pyscf", "cp2k", "ase"}


def test_every_oracle_example_of_the_reference_calculations_page_loads():
    import re
    from pathlib import Path

    import yaml

    from mlff.oracles.config import validate_oracle_config

    text = (Path(__file__).resolve().parents[2] / "docs" /
            "reference_calculations.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    configs = [validate_oracle_config(block) for block in blocks]
    assert {c.type for c in configs} == {"cp2k", "gpaw"}
    cp2k = next(c for c in configs if c.type == "cp2k")
    assert cp2k.cutoff == 5442.3 and cp2k.max_scf == 300
