"""ASE calculator for mlff models.

Results (ASE units and signs): ``energy`` and ``free_energy`` (eV), ``energies``
(per-atom, eV), ``forces`` (eV/Å), and ``stress`` (eV/Å³, Voigt order xx yy zz yz xz xy)
for structures periodic in all three directions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlff.data import keys as K
from mlff.data.graph import structure_to_graph, to_device
from mlff.data.readers import Structure
from mlff.errors import DataError
from mlff.models.io import load_model
from mlff.models.potential import Potential


class MLFFCalculator(Calculator):
    """An ASE calculator backed by an mlff :class:`~mlff.models.Potential`.

    Args:
        model: a loaded Potential or the path of a ``.mlff`` file.
        device: torch device to run on (``"cpu"``, ``"cuda"``, ...).
        dtype: ``"float32"``/``"float64"`` or a torch dtype; default: the model's own.

    Examples:
        >>> from ase.build import molecule
        >>> atoms = molecule("CH3CH2OH")               # doctest: +SKIP
        >>> atoms.calc = MLFFCalculator("model.mlff")  # doctest: +SKIP
        >>> atoms.get_forces().shape                   # doctest: +SKIP
        (9, 3)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Potential | str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model, device=device, dtype=dtype)
        else:
            model = model.to(device)
            if dtype is not None:
                model = model.to(dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        self.model = model.eval()
        self.device = torch.device(device)

    def atoms_to_graph(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """The graph dict of ``atoms`` on the model's device and dtype.

        Raises:
            UnknownElementError: an element of ``atoms`` is unknown to the model.
        """
        self.model.check_species(torch.as_tensor(atoms.numbers), f"Atoms {atoms.get_chemical_formula()}")
        if not np.isfinite(atoms.positions).all():
            raise DataError(f"Atoms {atoms.get_chemical_formula()}: positions contain NaN or inf.")
        graph = structure_to_graph(Structure(atoms=atoms), self.model.cutoff)
        return to_device(graph, self.device, self.model.dtype)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Compute the requested properties of ``atoms`` (all of them in one pass)."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a structure periodic in all three directions"
            )
        graph = self.atoms_to_graph(self.atoms)
        out = self.model(graph, compute_forces=True, compute_stress=bool(self.atoms.pbc.all()))
        energy = float(out[K.ENERGY].detach().cpu()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[K.NODE_ENERGY].detach().cpu().double().numpy(),
            "forces": out[K.FORCES].detach().cpu().double().numpy(),
        }
        if K.STRESS in out:
            stress = out[K.STRESS].detach().cpu().double().numpy()[0]
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
