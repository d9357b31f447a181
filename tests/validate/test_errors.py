"""Batched predictions, error metrics against a direct numpy computation, parity plots."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.stress import voigt_6_to_full_3x3_stress

from mlff.calculators import MLFFCalculator
from mlff.data import GraphDataset, read_structures
from mlff.errors import DataError, UnknownElementError
from mlff.validate import error_metrics, evaluate_file, parity_plots, predict
from mlff.validate.parity import ENERGY_PLOT, FORCES_PLOT, STRESS_PLOT
from tests import helpers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def potential():
    return helpers.build_potential("painn", scale=10.0, shift=0.25)


@pytest.fixture
def data_file(tmp_path):
    """Molecules (config_type "mol") and periodic Cu with stress ("bulk"); labels random."""
    atoms = [helpers.ethanol(seed=1), helpers.water(seed=2), helpers.ethanol(seed=3),
             helpers.copper(seed=4), helpers.copper(seed=5)]
    frames = [helpers.with_random_labels(a, seed=i) for i, a in enumerate(atoms)]
    for frame in frames:
        frame.info["config_type"] = "bulk" if frame.pbc.all() else "mol"
    path = tmp_path / "frames.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


@pytest.fixture
def frames(data_file):
    """The frames as stored in the file (positions rounded as extxyz writes them)."""
    return ase.io.read(data_file, index=":")


@pytest.fixture
def dataset(data_file, potential):
    return GraphDataset.from_file(data_file, potential.cutoff)


def reference_by_calculator(potential, frames):
    """Energy, forces and (3x3 or None) stress of each frame, one MLFFCalculator call each."""
    calculator = MLFFCalculator(potential)
    results = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        stress = voigt_6_to_full_3x3_stress(atoms.get_stress()) if atoms.pbc.all() else None
        results.append((atoms.get_potential_energy(), atoms.get_forces(), stress))
    return results


def numpy_metrics(frames, results, indices):
    """Energy, forces and stress errors of ``indices``, computed directly with numpy."""
    e_err = np.array([results[i][0] - frames[i].get_potential_energy() for i in indices])
    n = np.array([len(frames[i]) for i in indices])
    f_err = np.concatenate([(results[i][1] - frames[i].get_forces()).ravel() for i in indices])
    s_idx = [i for i in indices if frames[i].pbc.all()]
    out = {
        "num_structures": len(indices), "num_atoms": int(n.sum()),
        "energy_mae_meV": 1e3 * np.abs(e_err).mean(),
        "energy_rmse_meV": 1e3 * np.sqrt((e_err**2).mean()),
        "energy_mae_meV_per_atom": 1e3 * np.abs(e_err / n).mean(),
        "energy_rmse_meV_per_atom": 1e3 * np.sqrt(((e_err / n) ** 2).mean()),
        "num_force_components": f_err.size,
        "forces_mae_meV_per_A": 1e3 * np.abs(f_err).mean(),
        "forces_rmse_meV_per_A": 1e3 * np.sqrt((f_err**2).mean()),
    }
    if s_idx:
        s_err = np.concatenate([
            (results[i][2] - voigt_6_to_full_3x3_stress(frames[i].get_stress())).ravel()
            for i in s_idx
        ])
        out["stress_mae_meV_per_A3"] = 1e3 * np.abs(s_err).mean()
        out["stress_rmse_meV_per_A3"] = 1e3 * np.sqrt((s_err**2).mean())
    return out


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batched_predict_equals_calculator(potential, frames, dataset, batch_size):
    predictions = predict(potential, dataset, batch_size=batch_size)
    expected = reference_by_calculator(potential, frames)
    assert len(predictions) == len(frames)
    for i, (energy, forces, stress) in enumerate(expected):
        assert abs(predictions.energy[i] - energy) < 1e-10
        np.testing.assert_allclose(predictions.forces[i], forces, rtol=0, atol=1e-10)
        if stress is None:
            assert predictions.stress[i] is None
        else:
            np.testing.assert_allclose(predictions.stress[i], stress, rtol=0, atol=1e-10)


def test_predict_accepts_structures(potential, data_file, dataset):
    from_structures = predict(potential, read_structures(data_file), batch_size=3)
    from_dataset = predict(potential, dataset, batch_size=3)
    np.testing.assert_allclose(from_structures.energy, from_dataset.energy, rtol=0, atol=1e-12)


def test_metrics_equal_numpy(potential, frames, dataset):
    metrics = error_metrics(predict(potential, dataset, batch_size=2), dataset)
    expected = numpy_metrics(frames, reference_by_calculator(potential, frames), range(5))
    overall = metrics["overall"]
    for name, value in expected.items():
        assert overall[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert overall["num_energy"] == overall["num_forces"] == 5
    assert overall["num_stress"] == 2


def test_metrics_split_by_config_type(potential, frames, dataset):
    assert dataset.config_types == ["bulk", "mol"]
    metrics = error_metrics(predict(potential, dataset), dataset)
    results = reference_by_calculator(potential, frames)
    groups = metrics["config_types"]
    assert set(groups) == {"bulk", "mol"}
    for name, indices in (("mol", [0, 1, 2]), ("bulk", [3, 4])):
        for key, value in numpy_metrics(frames, results, indices).items():
            assert groups[name][key] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, key)
    assert "stress_mae_meV_per_A3" not in groups["mol"] and groups["mol"]["num_stress"] == 0
    assert sum(g["num_structures"] for g in groups.values()) == 5


def test_missing_labels_are_left_out(potential, tmp_path):
    with_forces = helpers.with_random_labels(helpers.ethanol(), seed=0)
    energy_only = helpers.ethanol(seed=2)
    energy_only.info["energy"] = -27.0
    path = tmp_path / "partial.xyz"
    ase.io.write(path, [with_forces, energy_only], format="extxyz")
    dataset = GraphDataset.from_file(path, potential.cutoff)
    overall = error_metrics(predict(potential, dataset), dataset)["overall"]
    assert overall["num_energy"] == 2 and overall["num_forces"] == 1
    assert overall["num_force_components"] == 27
    assert not any(k.startswith("stress_") for k in overall)


def test_unknown_element_names_file_and_frame(potential, tmp_path):
    nitrogen = helpers.with_random_labels(helpers.ethanol(), seed=0)
    nitrogen.numbers[2] = 7
    path = tmp_path / "with_n.xyz"
    ase.io.write(path, [helpers.with_random_labels(helpers.water(), seed=1), nitrogen],
                 format="extxyz")
    dataset = GraphDataset.from_file(path, potential.cutoff)
    with pytest.raises(UnknownElementError, match=rf"{path}:1: element N is not known"):
        predict(potential, dataset)


def test_parity_plots_written(potential, dataset, tmp_path):
    predictions = predict(potential, dataset)
    written = parity_plots(predictions, dataset, tmp_path / "plots", prefix="t-", title="frames")
    names = sorted(p.name for p in written)
    assert names == sorted(f"t-{n}" for n in (ENERGY_PLOT, FORCES_PLOT, STRESS_PLOT))
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_no_stress_plot_without_stress_labels(potential, tmp_path):
    path = tmp_path / "molecules.xyz"
    frames = [helpers.with_random_labels(helpers.ethanol(seed=s), seed=s) for s in (1, 2)]
    ase.io.write(path, frames, format="extxyz")
    report = evaluate_file(potential, path, plots_dir=tmp_path / "plots")
    assert sorted(p.rsplit("/", 1)[1] for p in report["plots"]) == [
        f"molecules-{ENERGY_PLOT}", f"molecules-{FORCES_PLOT}"]
    assert report["num_structures"] == 2 and report["num_atoms"] == 18


def test_evaluate_file_without_labels_raises(potential, tmp_path):
    path = tmp_path / "bare.xyz"
    ase.io.write(path, [helpers.ethanol()], format="extxyz")
    with pytest.raises(DataError, match="no frame has an energy"):
        evaluate_file(potential, path)


def test_evaluate_packed_file_equals_source_file(potential, data_file, tmp_path):
    from mlff.data.packed import pack
    from mlff.errors import ConfigError
    from mlff.validate.evaluate import evaluate_file

    packed = pack([data_file], tmp_path / "data.h5", cutoff=potential.cutoff)
    direct = evaluate_file(potential, data_file)["metrics"]
    from_packed = evaluate_file(potential, packed)["metrics"]
    assert from_packed["overall"].keys() == direct["overall"].keys()
    for key, value in direct["overall"].items():
        assert from_packed["overall"][key] == pytest.approx(value, rel=1e-12), key
    other = pack([data_file], tmp_path / "other.h5", cutoff=potential.cutoff + 1.0)
    with pytest.raises(ConfigError, match="Repack"):
        evaluate_file(potential, other)
