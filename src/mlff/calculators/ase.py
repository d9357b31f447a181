"""ASE calculator for mlff models.

Results (ASE units and signs): ``energy`` and ``free_energy`` (eV), ``energies``
(per-atom, eV), ``forces`` (eV/Å), and ``stress`` (eV/Å³, Voigt order xx yy zz yz xz xy)
for structures periodic in all three directions.

A committee model (:class:`mlff.uq.Committee`) gives the members' mean for all of these,
and its disagreement:

==============================  =========  ================================================
``forces_std``                  (N,) eV/Å  σ_i = sqrt((1/K) Σ_k |F_ki − F̄_i|²) per atom
``max_forces_std``              eV/Å       max_i σ_i (DP-GEN's "max_devi_f")
``energy_std``                  eV         std of the members' total energies
``energy_std_per_atom``         eV/atom    ``energy_std`` / N
``member_energies``             (K,) eV    each member's energy
``forces_error_estimate``       (N,) eV/Å  calibrated |ΔF_i| expected from σ_i (when the
                                           committee file holds a calibration)
``max_forces_error_estimate``   eV/Å       its maximum over atoms
==============================  =========  ================================================
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlff import runtime
from mlff.calculators.dispersion import add_dispersion, model_dispersion
from mlff.calculators.neighbors import VerletNeighborList
from mlff.data import keys as K
from mlff.data.graph import graph_from_edges, to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError, DataError
from mlff.models.chunked import evaluate_in_chunks, plan_chunk_size
from mlff.models.heads import model_with_head
from mlff.models.potential import Potential
from mlff.models.precision import Precision, torch_dtype
from mlff.threads import governor
from mlff.uq.calibration import Calibration
from mlff.uq.committee import ENERGY_STD, FORCES_STD, MEMBER_ENERGY, Committee
from mlff.uq.io import load_model

UNCERTAINTY_PROPERTIES = ["forces_std", "max_forces_std", "energy_std", "energy_std_per_atom",
                          "member_energies"]
CALIBRATED_PROPERTIES = ["forces_error_estimate", "max_forces_error_estimate"]

# automatic chunking (max_atoms_per_chunk=None): structures with fewer edges than this
# always run whole; larger ones get a memory plan (mlff.models.chunked.plan_chunk_size)
AUTO_PROBE_EDGES = 200_000
# the share of the device's available memory one evaluation may take
AUTO_MEMORY_FRACTION = 0.85


class MLFFCalculator(Calculator):
    """An ASE calculator backed by an mlff :class:`~mlff.models.Potential` or committee.

    Args:
        model: a loaded Potential or Committee, or the path of a ``.mlff`` file. A model
            already on ``device``, in ``dtype`` and in eval mode is used as it is;
            otherwise the calculator runs a copy, so the caller's model never moves.
        device: torch device to run on (``"cpu"``, ``"cuda"``, ...).
        dtype: ``"float32"``/``"float64"`` or a torch dtype; default: the model's own.
        skin: neighbour-list buffer, Å: the list is built at ``cutoff + skin`` and reused
            until an atom has moved more than ``skin / 2`` or the cell, pbc or atoms
            change; 0 builds a fresh list on every call. The counters are in
            ``calculator.neighbor_list`` (``calls``, ``rebuilds``).
        max_atoms_per_chunk: evaluate in chunks of at most this many atoms (plus the halo
            of the model's receptive field around each), see :mod:`mlff.models.chunked`.
            ``None``: automatic: for structures with more than ``AUTO_PROBE_EDGES``
            edges the memory per edge is measured once per structure size on a probe
            chunk, and the structure is chunked only if a whole evaluation would take
            more than ``AUTO_MEMORY_FRACTION`` of the device's available memory
            (:func:`mlff.models.chunked.plan_chunk_size`); 0: never chunk. Committees
            are chunked too (every member runs on each chunk).
        keep_freed_memory: on the CPU, let the C allocator keep freed memory for reuse
            (:func:`mlff.runtime.keep_freed_memory`, process-wide): 1.3-1.7x faster steps
            for large structures, at the price of the process keeping its peak memory.
        threads: torch CPU threads; ``None``: the cores other processes leave free,
            re-checked every few seconds (:mod:`mlff.threads`; ``MLFF_NUM_THREADS`` or
            ``OMP_NUM_THREADS`` in the environment fix it).
        dispersion: D3 of a model trained on labels minus D3 (``data.dispersion``):
            ``None`` adds it as the model file says, ``False`` gives the model alone,
            ``True`` insists (an error for a model trained without D3).
        head: the readout head of a multi-head model (``mlff.models.heads``) to evaluate;
            ``None``: the model's default head. Naming a head of a single-head model or
            of a committee is an error.

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
        model: Potential | Committee | str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | Precision | None = None,
        skin: float = 0.5,
        max_atoms_per_chunk: int | None = None,
        keep_freed_memory: bool = True,
        threads: int | None = None,
        dispersion: bool | None = None,
        head: str | None = None,
        **kwargs,
    ) -> None:
        if max_atoms_per_chunk is not None and int(max_atoms_per_chunk) < 0:
            raise ConfigError(
                f"max_atoms_per_chunk must be None (automatic), 0 (never chunk) or positive, "
                f"got {max_atoms_per_chunk}."
            )
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model, device=device, dtype=dtype)
            # the calculator owns this model: no parameter gradients, less autograd state
            model.requires_grad_(False)
        elif (model.device != torch.device(device) or model.training
              or (dtype is not None and model.dtype != torch_dtype(dtype))):
            # the caller's model stays where, in which dtype and in which mode it is
            model = copy.deepcopy(model).to(device=device)
            if dtype is not None:
                model = model.to(dtype=torch_dtype(dtype))
        model = model_with_head(model, head)
        self.model = model.eval()
        self.dispersion = model_dispersion(model, dispersion)
        self.device = torch.device(device)
        if keep_freed_memory and self.device.type == "cpu":
            runtime.keep_freed_memory()
        self.threads = governor(threads) if self.device.type == "cpu" else None
        self.neighbor_list = VerletNeighborList(model.cutoff, skin)
        self.max_atoms_per_chunk = max_atoms_per_chunk
        self._chunk_plans: dict[tuple[int, bool], int | None] = {}
        self.calibration: Calibration | None = None
        if isinstance(model, Committee):
            self.implemented_properties = self.implemented_properties + UNCERTAINTY_PROPERTIES
            if model.calibration is not None:
                self.calibration = Calibration.from_dict(model.calibration)
                self.implemented_properties = self.implemented_properties + CALIBRATED_PROPERTIES

    def atoms_to_graph(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """The graph dict of ``atoms`` on the model's device and dtype.

        Raises:
            UnknownElementError: an element of ``atoms`` is unknown to the model.
        """
        self.model.check_species(torch.as_tensor(atoms.numbers), f"Atoms {atoms.get_chemical_formula()}")
        if not np.isfinite(atoms.positions).all():
            raise DataError(f"Atoms {atoms.get_chemical_formula()}: positions contain NaN or inf.")
        edge_index, edge_shift = self.neighbor_list.update(atoms)
        graph = graph_from_edges(Structure(atoms=atoms), edge_index, edge_shift)
        return to_device(graph, self.device, self.model.dtype)

    def chunk_size(self, graph: dict[str, torch.Tensor], compute_stress: bool) -> int | None:
        """Atoms per chunk for this structure, or None to evaluate it whole."""
        num_atoms = int(graph[K.POSITIONS].shape[0])
        chunk = self.max_atoms_per_chunk
        if chunk is None:
            if int(graph[K.EDGE_INDEX].shape[1]) <= AUTO_PROBE_EDGES:
                return None
            key = (num_atoms, compute_stress)
            if key not in self._chunk_plans:  # the memory per edge does not change in MD
                budget = AUTO_MEMORY_FRACTION * runtime.available_memory(self.device)
                self._chunk_plans[key] = plan_chunk_size(self.model, graph, budget,
                                                         compute_stress)
            chunk = self._chunk_plans[key]
            if chunk is None:
                return None
        if chunk == 0 or chunk >= num_atoms:
            return None
        return int(chunk)

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
        if self.threads is not None:
            self.threads.update()
        graph = self.atoms_to_graph(self.atoms)
        compute_stress = bool(self.atoms.pbc.all())
        chunk = self.chunk_size(graph, compute_stress)
        if chunk is None:
            out = self.model(graph, compute_forces=True, compute_stress=compute_stress)
        else:
            out = evaluate_in_chunks(self.model, graph, chunk, compute_stress=compute_stress)
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
        if FORCES_STD in out:
            self._add_uncertainty(out, len(self.atoms))
        if self.dispersion is not None:
            add_dispersion(self.dispersion, self.atoms, self.results, "energies" in properties)

    def _add_uncertainty(self, out: dict[str, torch.Tensor], num_atoms: int) -> None:
        sigma = out[FORCES_STD].detach().cpu().double().numpy()
        energy_std = float(out[ENERGY_STD].detach().cpu()[0])
        self.results.update({
            "forces_std": sigma,
            "max_forces_std": float(sigma.max()) if len(sigma) else 0.0,
            "energy_std": energy_std,
            "energy_std_per_atom": energy_std / max(num_atoms, 1),
            "member_energies": out[MEMBER_ENERGY].detach().cpu().double().numpy()[:, 0],
        })
        if self.calibration is not None:
            estimate = self.calibration.predict(sigma)
            self.results["forces_error_estimate"] = estimate
            self.results["max_forces_error_estimate"] = float(estimate.max()) if len(sigma) else 0.0
