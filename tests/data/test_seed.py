"""Seed structures from one crystal: bulk, surfaces, defects, amorphous, tagged."""

from __future__ import annotations

from collections import Counter

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.cli.main import main
from mlff.data.seed import largest_void, seed_structures, supercell_repeats
from mlff.errors import DataError


def _min_distance(atoms):
    distances = atoms.get_all_distances(mic=True)
    return distances[np.triu_indices(len(atoms), 1)].min()


def test_seed_structures_from_silicon():
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    structures = seed_structures(crystal, seed=3)
    kinds = Counter(a.info["config_type"] for a in structures)
    assert kinds == {"bulk_strained": 4, "bulk_rattled": 4, "surface_100": 1, "surface_110": 1,
                     "surface_111": 1, "vacancy": 2, "interstitial": 2, "random_packed": 1}
    supercell = 8 * 8  # 5.43 Å repeated twice: widths of at least 8 Å
    for atoms in structures:
        kind = atoms.info["config_type"]
        assert atoms.pbc.all() and set(atoms.get_chemical_symbols()) == {"Si"}
        if kind.startswith("bulk") or kind == "random_packed":
            assert len(atoms) == supercell
        if kind == "bulk_strained":
            assert abs(atoms.get_volume() / (8 * crystal.get_volume()) - 1) > 1e-3
        if kind == "bulk_rattled":
            assert atoms.get_volume() == pytest.approx(8 * crystal.get_volume())
        if kind.startswith("surface"):
            # vacuum: the slab spans less than its cell along the normal
            normal = np.cross(atoms.cell[0], atoms.cell[1])
            normal /= np.linalg.norm(normal)
            heights = atoms.positions @ normal
            assert abs(atoms.cell[2] @ normal) - np.ptp(heights) > 14.0
        if kind == "vacancy":
            assert len(atoms) == supercell - 1
        if kind == "interstitial":
            assert len(atoms) == supercell + 1
            assert _min_distance(atoms) > 1.8  # placed in a void, not on an atom
        if kind == "random_packed":
            assert _min_distance(atoms) >= 0.7 * 2.351 - 1e-9
    again = seed_structures(crystal, seed=3)
    np.testing.assert_array_equal(again[5].positions, structures[5].positions)  # seeded


def test_melt_quench_with_a_calculator():
    copper = bulk("Cu", "fcc", a=3.61, cubic=True)
    structures = seed_structures(copper, n_strained=0, n_rattled=0, surfaces=[],
                                 n_vacancies=0, n_interstitials=0, quench_calculator=EMT(),
                                 melt_K=2500.0, quench_steps=40, seed=1)
    assert [a.info["config_type"] for a in structures] == ["melt_quench"]
    quenched = structures[0]
    assert quenched.calc is None and _min_distance(quenched) > 2.0


def test_helpers_and_errors():
    from ase.build import molecule

    assert supercell_repeats(bulk("Si", "diamond", a=5.43), 8.0) == (3, 3, 3)  # widths 3.13 Å
    # near the largest void of diamond silicon, 2.35 Å from its neighbours (a 12³ grid)
    cubic = bulk("Si", "diamond", a=5.43, cubic=True)
    void = largest_void(cubic)
    cubic.append("Si")
    cubic.positions[-1] = void
    assert cubic.get_distances(-1, range(8), mic=True).min() > 2.2
    with pytest.raises(DataError, match="periodic in all three"):
        seed_structures(molecule("H2O"))


def test_seed_command(tmp_path, capsys):
    crystal = tmp_path / "si.xyz"
    ase.io.write(crystal, bulk("Si", "diamond", a=5.43, cubic=True))
    out = tmp_path / "seeds.xyz"
    assert main(["data", "seed", str(crystal), "--out", str(out), "--strained", "1",
                 "--rattled", "1", "--surfaces", "111", "--vacancies", "1",
                 "--interstitials", "0", "--amorphous", "0"]) == 0
    assert "surface_111" in capsys.readouterr().out
    written = ase.io.read(out, ":")
    assert [a.info["config_type"] for a in written] == ["bulk_strained", "bulk_rattled",
                                                        "surface_111", "vacancy"]
    assert main(["data", "seed", str(crystal), "--out", str(out), "--surfaces", "1x0"]) == 2
