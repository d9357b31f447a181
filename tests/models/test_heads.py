"""Multi-head models: heads start as copies of the readout, each structure can use its
own head, the selected head saves, loads, deploys and gives forces = -dE/dr."""

import pytest
import torch
from ase.build import bulk, molecule

from mlff.calculators import MLFFCalculator
from mlff.calculators.lammps.deploy import check_against_potential, deploy
from mlff.calculators.lammps.external import load_deployed
from mlff.data import keys as K
from mlff.data.graph import collate, structure_to_graph, to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError
from mlff.models.heads import add_heads, default_head, head_names, select_head
from mlff.models.io import save_model
from mlff.models.potential import Potential
from mlff.models.registry import build_model
from mlff.uq.io import load_model
from tests.helpers import assert_forces_are_minus_energy_gradient

TINY = {"architecture": "sevennet", "cutoff": 4.0, "num_layers": 1, "num_features": 4,
        "l_max": 1, "num_radial": 4, "radial_mlp": [8], "avg_num_neighbors": 6.0}
SPECIES = [1, 6, 8, 29]


def _single(architecture=TINY):
    torch.manual_seed(0)
    model = build_model(dict(architecture), len(SPECIES))
    potential = Potential(model, dict(architecture), SPECIES, [-1.0, -2.0, -3.0, -4.0],
                          scale=1.3, shift=0.2)
    return potential.to(dtype=torch.float64)


def _two_heads():
    """A model with heads main and foundation, the foundation head's weights changed."""
    potential = _single()
    add_heads(potential, ["main", "foundation"])
    with torch.no_grad():
        for parameter in potential.model.extra_heads["foundation"].parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return potential


def _batch(potential):
    ethanol = molecule("CH3CH2OH")
    copper = bulk("Cu", "fcc", 3.6, cubic=True)
    copper.rattle(0.05, seed=1)
    graphs = [structure_to_graph(Structure(atoms=a), potential.cutoff) for a in (ethanol, copper)]
    return to_device(collate(graphs), potential.device, potential.dtype)


def test_new_heads_predict_what_the_readout_did():
    potential = _single()
    batch = _batch(potential)
    before = potential(batch)
    add_heads(potential, ["main", "foundation"])
    assert head_names(potential) == ["main", "foundation"] and default_head(potential) == "main"
    for name in ("main", "foundation"):
        after = select_head(potential, name)(batch)
        torch.testing.assert_close(after[K.ENERGY], before[K.ENERGY], rtol=0, atol=0)
        torch.testing.assert_close(after[K.FORCES], before[K.FORCES], rtol=0, atol=0)


def test_each_structure_uses_its_own_head():
    potential = _two_heads()
    batch = _batch(potential)
    main, foundation = (select_head(potential, name)(batch) for name in ("main", "foundation"))
    assert (main[K.ENERGY] - foundation[K.ENERGY]).abs().min() > 1e-3
    mixed = potential({**batch, K.HEAD: torch.tensor([1, 0])})  # ethanol: foundation
    torch.testing.assert_close(mixed[K.ENERGY], torch.stack([foundation[K.ENERGY][0],
                                                             main[K.ENERGY][1]]))
    torch.testing.assert_close(potential(batch)[K.ENERGY], main[K.ENERGY])  # the default


def test_the_selected_head_saves_loads_and_runs_in_ase(tmp_path):
    potential = _two_heads()
    path = save_model(potential, tmp_path / "two.mlff")
    loaded = load_model(path)
    batch = _batch(potential)
    for name in ("main", "foundation"):
        expected = select_head(potential, name)(batch)
        got = select_head(loaded, name)(batch)
        torch.testing.assert_close(got[K.ENERGY], expected[K.ENERGY], rtol=0, atol=0)
        torch.testing.assert_close(got[K.FORCES], expected[K.FORCES], rtol=0, atol=0)
        atoms = molecule("CH3CH2OH")
        atoms.calc = MLFFCalculator(path, head=name)
        assert atoms.get_potential_energy() == pytest.approx(float(expected[K.ENERGY][0]),
                                                             abs=1e-10)
    atoms = molecule("CH3CH2OH")
    atoms.calc = MLFFCalculator(path)  # no head named: the default, main
    assert atoms.get_potential_energy() == pytest.approx(
        float(select_head(potential, "main")(batch)[K.ENERGY][0]), abs=1e-10)


@pytest.mark.parametrize("head", ["main", "foundation"])
def test_forces_are_minus_the_energy_gradient_of_the_selected_head(head):
    potential = select_head(_two_heads(), head)
    assert_forces_are_minus_energy_gradient(lambda: MLFFCalculator(potential),
                                            molecule("CH3CH2OH"))


def test_deploy_writes_the_selected_head(tmp_path):
    potential = _two_heads()
    path = save_model(potential, tmp_path / "two.mlff")
    result = deploy(path, tmp_path / "out", build=False, format="torchscript",
                    structure=molecule("CH3CH2OH"), head="foundation")
    scripted = load_deployed(result.model)
    assert check_against_potential(scripted, select_head(potential, "foundation")) < 1e-9
    with pytest.raises(Exception, match="differ"):
        check_against_potential(scripted, select_head(potential, "main"))


def test_unknown_or_pointless_head_names_are_errors(tmp_path):
    potential = _two_heads()
    with pytest.raises(ConfigError, match="no head 'dft'; its heads are main, foundation"):
        select_head(potential, "dft")
    with pytest.raises(ConfigError, match="single readout head"):
        MLFFCalculator(_single(), head="main")
    with pytest.raises(ConfigError, match="already has the heads"):
        add_heads(potential, ["a", "b"])
    with pytest.raises(ConfigError, match="two or more distinct names"):
        add_heads(_single(), ["main", "main"])
    schnet = _single({"architecture": "schnet", "cutoff": 4.0})
    with pytest.raises(ConfigError, match="schnet architecture has no readout heads"):
        add_heads(schnet, ["main", "foundation"])


def test_evaluate_and_md_commands_use_the_named_head(tmp_path):
    """`mlff evaluate --head foundation` finds no error on labels made by that head, and
    `mlff md --head foundation` starts with its energy."""
    import json

    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlff.cli.main import main

    path = save_model(_two_heads(), tmp_path / "two.mlff")
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=2)
    atoms.calc = MLFFCalculator(path, head="foundation")
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    data = tmp_path / "labels.extxyz"
    ase.io.write(data, atoms)
    for head, zero in (("foundation", True), (None, False)):
        report = tmp_path / f"{head}.json"
        head_args = ["--head", head] if head else []
        assert main(["evaluate", str(path), str(data), "--json", str(report), *head_args]) == 0
        mae = json.loads(report.read_text())["files"][0]["metrics"]["overall"]["energy_mae_meV"]
        assert (mae < 1e-3) == zero, (head, mae)
    out = tmp_path / "md"
    assert main(["md", str(path), str(data), "--head", "foundation", "--steps", "1",
                 "--timestep", "0.5", "--temperature", "10", "--out", str(out)]) == 0
    first = ase.io.read(out / "trajectory.extxyz", 0)
    assert first.get_potential_energy() == pytest.approx(energy, abs=1e-8)
