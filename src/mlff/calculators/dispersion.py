"""D3 added back to a model trained on labels minus D3 (``data.dispersion``).

The model file's metadata says whether (and which) D3 the model was trained without;
:func:`model_dispersion` turns that into a :class:`~mlff.data.dispersion.D3` evaluator,
and :func:`add_dispersion` adds its energy, forces and stress to a calculator's results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from mlff.data.dispersion import D3, D3Settings, dispersion_settings
from mlff.errors import ConfigError


def model_metadata_of(model: Any) -> dict[str, Any]:
    """The metadata a loaded Potential or Committee keeps from its file."""
    return getattr(model, "metadata", None) or {}


def model_dispersion(model: Any, dispersion: bool | None = None) -> D3 | None:
    """The D3 evaluator a calculator of ``model`` adds, or ``None``.

    Args:
        model: a loaded Potential or Committee.
        dispersion: ``None``: as the model was trained (D3 when its file stores D3
            settings); ``True``: require D3 (an error for a model trained without it);
            ``False``: the model alone, without its D3.

    Raises:
        ConfigError: ``dispersion=True`` for a model trained without D3.
        MLFFError: the model needs D3 and simple-dftd3 is not installed.
    """
    settings: D3Settings | None = dispersion_settings(model_metadata_of(model))
    if dispersion is False:
        return None
    if settings is None:
        if dispersion:
            raise ConfigError(
                "this model was trained without D3 dispersion (its file stores no "
                "data.dispersion settings), so its energies and forces already are the "
                "reference method's: adding D3 would count dispersion twice. Retrain with "
                "data.dispersion on labels that include D3, or use dispersion=None."
            )
        return None
    return D3(settings)


def add_dispersion(d3: D3, atoms: Atoms, results: dict[str, Any], per_atom: bool) -> None:
    """Add D3 of ``atoms`` to ``results`` (ASE names and units) in place.

    ``energy``/``free_energy``, ``forces``, ``stress`` (when present) and each committee
    member's energy (``member_energies``) get the D3 part; disagreement measures do not
    change. Per-atom ``energies`` need simple-dftd3's pairwise energies (N×N): with
    ``per_atom`` they get their D3 part, without it they are dropped from ``results``
    (ASE asks again when someone wants them).
    """
    where = f"Atoms {atoms.get_chemical_formula()}"
    if not per_atom:
        results.pop("energies", None)
    result = d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc, where=where,
                        energies=per_atom and "energies" in results)
    for key in ("energy", "free_energy"):
        results[key] = results[key] + result.energy
    results["forces"] = results["forces"] + result.forces
    if "stress" in results and result.stress is not None:
        results["stress"] = results["stress"] + full_3x3_to_voigt_6_stress(result.stress)
    if "energies" in results and result.energies is not None:
        results["energies"] = results["energies"] + result.energies
    if "member_energies" in results:
        results["member_energies"] = np.asarray(results["member_energies"]) + result.energy
