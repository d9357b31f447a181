"""Deploy a model for GROMACS's NNPot interface: one TorchScript file, GROMACS's units.

GROMACS (2025 and later, built with LibTorch) loads the file named by ``nnpot-modelfile``
and calls its ``forward`` every step with the inputs the ``.mdp`` lists as
``nnpot-model-input1``, ``...2``, ... in that order. :class:`GromacsModel` takes::

    forward(positions, atomic_numbers, box=None, pbc=None, pairs=None, shifts=None)

    positions       (N, 3) float32   nm, the atoms of ``nnpot-input-group``   atom-positions
    atomic_numbers  (N,) int32                                                 atom-numbers
    box             (3, 3) float32   nm, rows are the box vectors              box
    pbc             (3,) bool        periodic directions (xyz, or xy)          pbc
    pairs           (P, 2) int32     each pair once (GROMACS 2026)             atom-pairs
    shifts          (P, 3) real      nm, periodic shift of each pair           pair-shifts
    -> energy       () float64       kJ/mol
    -> forces       (N, 3)           kJ/mol/nm, in the model's dtype

so the ``.mdp`` lists ``atom-positions atom-numbers`` (non-periodic), then ``box pbc``
(periodic), then ``atom-pairs pair-shifts`` (GROMACS's pair list; 2026 and later), each
prefix of that order. GROMACS uses returned forces as they are (a second output) and
computes no gradient itself.

Neighbours: with ``pairs``, the edges are GROMACS's pairs in both directions, the vector
of pair (a, b) with shift s being ``x_a - x_b + s`` (GROMACS's convention), limited to the
model's cutoff; GROMACS finds them at each pair search from ``nnpot-pair-cutoff``, so that
must be at least the model's cutoff plus the distance atoms move between searches.
GROMACS (2026) builds those shifts as ``box · n`` rather than ``nᵀ · box``, right only for
rectangular boxes, so the model refuses them with a triclinic box. Without
``pairs`` the model finds all pairs within its cutoff itself: in a periodic box at least
three cutoffs wide in every direction with a cell list (cost grows as N), otherwise (a
molecule, an ``xy`` slab, a box less than three cutoffs wide) by comparing every atom with
every other over all periodic images within the cutoff (cost grows as N², any box).

Inside, the model is mlff's LAMMPS module (:mod:`mlff.calculators.lammps.deploy`): the
same TorchScript of the architecture, node energies and edge gradients in eV and Å, from
which this wrapper sums the energy and the forces and converts the units. A committee
gives its members' mean, as the ASE calculator does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import ase.units
import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch import nn

from mlff.calculators.lammps import deploy as lammps_deploy
from mlff.errors import ConfigError, ModelFileError

EV_IN_KJ_PER_MOL = ase.units.eV / (ase.units.kJ / ase.units.mol)  # 96.485...
ANGSTROM_PER_NM = 10.0
FORMAT_VERSION = 1
# the .mdp inputs in the order forward() takes them
INPUTS = ("atom-positions", "atom-numbers", "box", "pbc", "atom-pairs", "pair-shifts")
_MAX_CANDIDATES = 1 << 21  # atom pairs x images compared at once by the built-in search


class GromacsModel(nn.Module):
    """The module GROMACS's NNPot runs (see the module docstring for the contract).

    Args:
        scripted: the TorchScript :class:`~mlff.calculators.lammps.deploy.LammpsModel`
            of the model (from :func:`~mlff.calculators.lammps.deploy.script_model`).
    """

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.model = scripted
        self.species: list[int] = [int(z) for z in scripted.species]
        self.symbols: list[str] = [chemical_symbols[z] for z in self.species]
        self.cutoff: float = float(scripted.cutoff)  # Å
        self.dtype: str = str(scripted.dtype)
        self.committee_size: int = int(scripted.committee_size)
        self.format_version: int = FORMAT_VERSION
        index = torch.full((119,), -1, dtype=torch.int64)
        for k, z in enumerate(self.species):
            index[z] = k
        self.register_buffer("species_index", index)
        self.known: str = " ".join(self.symbols)
        self.angstrom_per_nm: float = ANGSTROM_PER_NM
        self.ev_in_kj_per_mol: float = EV_IN_KJ_PER_MOL
        self.max_candidates: int = _MAX_CANDIDATES

    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: Optional[torch.Tensor] = None,
        pbc: Optional[torch.Tensor] = None,
        pairs: Optional[torch.Tensor] = None,
        shifts: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> energy () kJ/mol (float64) and forces (N, 3) kJ/mol/nm."""
        dtype = torch.float64 if self.dtype == "float64" else torch.float32
        count = positions.shape[0]
        species = self._species(atomic_numbers)
        x = positions.detach().to(dtype) * self.angstrom_per_nm
        cell: Optional[torch.Tensor] = None
        if box is not None:
            cell = box.detach().to(device=x.device, dtype=dtype) * self.angstrom_per_nm
        periodic = torch.zeros(3, dtype=torch.bool, device=x.device)
        if pbc is not None:
            periodic = pbc.to(device=x.device, dtype=torch.bool)
        elif cell is not None:
            periodic = torch.ones(3, dtype=torch.bool, device=x.device)
        if cell is None:
            if bool(periodic.any()):
                raise RuntimeError(
                    "mlff model: pbc is given but no box: list box before pbc in the "
                    "nnpot-model-input options (atom-positions, atom-numbers, box, pbc).")
            cell = torch.eye(3, dtype=dtype, device=x.device)
        if pairs is not None:
            edge_index, vectors = self._pair_edges(x, pairs, shifts, cell)
        elif bool(periodic.all()) and self._bins(cell).min() >= 3:
            edge_index, vectors = self._cell_list_edges(x, cell)
        else:
            edge_index, vectors = self._search_edges(x, cell, periodic)
        node_energy, edge_grad = self.model(species, edge_index, vectors, count)
        energy = node_energy.sum(dim=1).mean() * self.ev_in_kj_per_mol
        grad = edge_grad.mean(dim=0)
        forces = torch.zeros((count, 3), dtype=grad.dtype, device=grad.device)
        forces.index_add_(0, edge_index[0], grad)
        forces.index_add_(0, edge_index[1], -grad)
        return energy, forces * (self.ev_in_kj_per_mol / self.angstrom_per_nm)

    def _species(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Species indices of the atoms; an element the model lacks stops with its atom."""
        numbers = atomic_numbers.to(torch.int64)
        valid = (numbers >= 0) & (numbers < self.species_index.shape[0])
        species = self.species_index[torch.where(valid, numbers, torch.zeros_like(numbers))]
        bad = (~valid) | (species < 0)
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0].item())
            raise RuntimeError(
                "mlff model: atom " + str(first + 1) + " of nnpot-input-group has atomic number "
                + str(int(numbers[first].item())) + ", an element the model was not trained on "
                "(it knows " + self.known + "; " + str(int(bad.sum().item())) + " such atom(s)). "
                "Give GROMACS an nnpot-input-group of these elements only, and check the atomic "
                "numbers (at.num) of the [ atomtypes ] in the topology."
            )
        return species

    def _pair_edges(
        self,
        x: torch.Tensor,
        pairs: torch.Tensor,
        shifts: Optional[torch.Tensor],
        cell: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions of GROMACS's pairs within the cutoff; (a, b) is x_a - x_b + s."""
        if bool((cell - torch.diag(torch.diagonal(cell))).abs().max() > 0):
            raise RuntimeError(
                "mlff model: GROMACS's pair-shifts are used with a triclinic box, where GROMACS "
                "(2026) gives wrong shift vectors. Leave out atom-pairs and pair-shifts from the "
                "nnpot-model-input options (the model then finds its neighbours itself), or use "
                "a rectangular box."
            )
        first = pairs[:, 0].to(torch.int64)
        second = pairs[:, 1].to(torch.int64)
        vectors = x[first] - x[second]
        if shifts is not None:
            shift = shifts.detach().to(device=x.device, dtype=x.dtype) * self.angstrom_per_nm
            vectors = vectors + shift
        keep = (vectors * vectors).sum(dim=1) < self.cutoff * self.cutoff
        first, second, vectors = first[keep], second[keep], vectors[keep]
        # edge (sender b, receiver a) has r_ba = x_a - x_b + s; its reverse the opposite
        edge_index = torch.stack([torch.cat([second, first]), torch.cat([first, second])])
        return edge_index, torch.cat([vectors, -vectors])

    def _bins(self, cell: torch.Tensor) -> torch.Tensor:
        """(3,) int64: how many bins at least one cutoff wide fit across the cell, per direction."""
        volume = torch.abs(torch.linalg.det(cell))
        faces = torch.linalg.norm(torch.linalg.cross(cell.roll(-1, 0), cell.roll(-2, 0)), dim=1)
        return torch.floor(volume / faces / self.cutoff).to(torch.int64)

    def _cell_list_edges(
        self, x: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All directed pairs closer than the cutoff in a periodic cell at least 3 bins wide: O(N).

        Atoms are sorted into bins at least one cutoff wide; each atom meets the atoms of
        its own and the 26 adjacent bins, each bin one image (3 or more bins across).
        """
        count = x.shape[0]
        bins = self._bins(cell)
        fractional = x @ torch.linalg.inv(cell)
        fractional = fractional - torch.floor(fractional)
        wrapped = fractional @ cell
        slot = torch.minimum(torch.floor(fractional * bins).to(torch.int64), bins - 1)  # (N, 3)
        strides = torch.stack([bins[1] * bins[2], bins[2], torch.ones_like(bins[0])])
        bin_of = (slot * strides).sum(dim=1)
        order = torch.argsort(bin_of)
        occupancy = torch.bincount(bin_of, minlength=int(bins.prod()))
        first_in_bin = torch.cumsum(occupancy, dim=0) - occupancy
        atoms = torch.arange(count, device=x.device)
        senders: list[torch.Tensor] = []
        receivers: list[torch.Tensor] = []
        found: list[torch.Tensor] = []
        for a in range(-1, 2):
            for b in range(-1, 2):
                for c in range(-1, 2):
                    offset = torch.tensor([a, b, c], device=x.device)
                    neighbour = slot + offset
                    image = torch.div(neighbour, bins, rounding_mode="floor")  # -1, 0 or 1
                    neighbour_bin = ((neighbour - image * bins) * strides).sum(dim=1)
                    members = occupancy[neighbour_bin]  # (N,) atoms in that bin
                    i = torch.repeat_interleave(atoms, members)
                    within = torch.arange(i.shape[0], device=x.device) - torch.repeat_interleave(
                        torch.cumsum(members, dim=0) - members, members)
                    j = order[first_in_bin[neighbour_bin[i]] + within]
                    vectors = wrapped[j] - wrapped[i] + image[i].to(x.dtype) @ cell
                    keep = (vectors * vectors).sum(dim=1) < self.cutoff * self.cutoff
                    if a == 0 and b == 0 and c == 0:
                        keep = keep & (i != j)
                    senders.append(i[keep])
                    receivers.append(j[keep])
                    found.append(vectors[keep])
        return torch.stack([torch.cat(senders), torch.cat(receivers)]), torch.cat(found)

    def _search_edges(
        self, x: torch.Tensor, cell: torch.Tensor, periodic: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All directed pairs closer than the cutoff, over every periodic image that is."""
        cutoff = self.cutoff
        cell = cell.clone()
        if not bool(periodic[2]):  # xy: a unit third vector normal to the plane
            normal = torch.linalg.cross(cell[0], cell[1])
            cell[2] = normal / torch.linalg.norm(normal)
        if not bool(periodic.any()):
            cell = torch.eye(3, dtype=x.dtype, device=x.device)
        volume = torch.abs(torch.linalg.det(cell))
        inverse = torch.linalg.inv(cell)
        ranges: list[torch.Tensor] = []
        for k in range(3):
            reach = 0
            if bool(periodic[k]):
                face = torch.linalg.norm(torch.linalg.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                # after wrapping, fractional differences lie in [-1/2, 1/2]: image n can be
                # within the cutoff only if |n| <= 1/2 + cutoff / (width of the cell)
                reach = int(math.floor(0.5 + cutoff * float(face) / float(volume) + 1e-6))
            ranges.append(torch.arange(-reach, reach + 1, device=x.device))
        grid = torch.meshgrid(ranges[0], ranges[1], ranges[2], indexing="ij")
        images = torch.stack([g.reshape(-1) for g in grid], dim=1).to(x.dtype)  # (S, 3)
        image_vectors = images @ cell
        central = (images == 0).all(dim=1)
        wrap = periodic.to(x.dtype)
        count = x.shape[0]
        rows = max(1, self.max_candidates // max(1, count * images.shape[0]))
        senders: list[torch.Tensor] = []
        receivers: list[torch.Tensor] = []
        found: list[torch.Tensor] = []
        for start in range(0, count, rows):
            stop = min(count, start + rows)
            delta = x.unsqueeze(0) - x[start:stop].unsqueeze(1)  # (B, N, 3): x_j - x_i
            delta = delta - torch.round(delta @ inverse * wrap) @ cell
            candidates = delta.unsqueeze(2) + image_vectors  # (B, N, S, 3)
            close = (candidates * candidates).sum(dim=-1) < cutoff * cutoff
            same = (torch.arange(start, stop, device=x.device).unsqueeze(1)
                    == torch.arange(count, device=x.device).unsqueeze(0))
            close = close & ~(same.unsqueeze(2) & central)
            hits = torch.nonzero(close)
            i, j, s = hits[:, 0], hits[:, 1], hits[:, 2]
            senders.append(i + start)
            receivers.append(j)
            found.append(candidates[i, j, s])
        edge_index = torch.stack([torch.cat(senders), torch.cat(receivers)])
        return edge_index, torch.cat(found).reshape(-1, 3)


def script_gromacs_model(
    model: Any, dtype: torch.dtype | str | None = None
) -> torch.jit.ScriptModule:
    """The TorchScript :class:`GromacsModel` of a Potential or committee (on the CPU).

    TorchScript because GROMACS's NNPot loads its models with ``torch::jit::load``
    (TorchScript is deprecated in PyTorch; ``torch.jit`` warns so when this runs).

    Raises:
        ModelFileError: the architecture cannot be compiled to TorchScript.
    """
    inner = lammps_deploy.script_model(model, dtype)
    with lammps_deploy._quiet_scripting():
        return torch.jit.script(GromacsModel(inner))


def gromacs_inputs(atoms: Atoms, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """The inputs GROMACS gives for ``atoms`` (Å -> nm): positions, numbers; box, pbc if periodic.

    Positions are float32 as GROMACS passes them (a double-precision GROMACS included).
    """
    inputs = [torch.tensor(atoms.positions / ANGSTROM_PER_NM, dtype=torch.float32),
              torch.tensor(atoms.numbers, dtype=torch.int32)]
    if atoms.pbc.any():
        inputs += [torch.tensor(atoms.cell.array / ANGSTROM_PER_NM, dtype=torch.float32),
                   torch.tensor(atoms.pbc, dtype=torch.bool)]
    return inputs


def as_gromacs_sees(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with positions and cell rounded as GROMACS passes them (float32 nm)."""
    atoms = atoms.copy()
    def rounded(values: np.ndarray) -> np.ndarray:
        return (values / ANGSTROM_PER_NM).astype(np.float32).astype(np.float64) * ANGSTROM_PER_NM

    atoms.positions = rounded(atoms.positions)
    atoms.cell = rounded(atoms.cell.array)
    return atoms


def check_against_calculator(
    scripted: torch.jit.ScriptModule, model: Any, rtol: float | None = None
) -> float:
    """Compare the GROMACS module, called as GROMACS calls it, with the ASE calculator.

    On a small periodic cell of every species (positions rounded to float32 as GROMACS
    passes them), in kJ/mol and kJ/mol/nm.

    Returns:
        The largest relative deviation of energy and forces.

    Raises:
        ModelFileError: more than ``rtol`` apart (default 1e-9 in float64, 1e-4 in float32).
    """
    from mlff.calculators.ase import MLFFCalculator

    atoms = lammps_deploy._probe_structure(list(scripted.symbols))
    atoms.center(vacuum=1.0)
    atoms.pbc = True
    atoms = as_gromacs_sees(atoms)
    energy, forces = scripted(*gromacs_inputs(atoms))
    dtype = torch.float64 if scripted.dtype == "float64" else torch.float32
    atoms.calc = MLFFCalculator(copy.deepcopy(model).cpu(), dtype=dtype)
    reference_energy = atoms.get_potential_energy() * EV_IN_KJ_PER_MOL
    reference_forces = atoms.get_forces() * EV_IN_KJ_PER_MOL / ANGSTROM_PER_NM
    worst = abs(float(energy) - reference_energy) / max(abs(reference_energy), 1.0)
    scale = max(float(np.abs(reference_forces).max()), 1e-3)
    deviation = np.abs(forces.detach().double().numpy() - reference_forces).max()
    worst = max(worst, float(deviation) / scale)
    rtol = rtol if rtol is not None else (1e-9 if dtype == torch.float64 else 1e-4)
    if not math.isfinite(worst) or worst > rtol:
        raise ModelFileError(
            f"the GROMACS model differs from the ASE calculator by {worst:.3g} (relative; "
            f"allowed {rtol:g}) on a test cell. Please report this with the model's architecture."
        )
    return worst


@dataclass
class GromacsDeployment:
    """What :func:`deploy_gromacs` wrote: the model file, its metadata, the check's deviation."""

    model: Path
    metadata: dict[str, Any]
    check_error: float | None


def deploy_gromacs(
    model: Any, out: str | Path, dtype: torch.dtype | str | None = None, check: bool = True
) -> GromacsDeployment:
    """Write ``model`` (a ``.mlff`` file, Potential or committee) as a model file for GROMACS.

    Args:
        model: the model.
        out: the file to write (conventionally ``model.pt``: GROMACS wants that extension).
        dtype: ``float32``/``float64`` inside the model; default: the model's own.
        check: compare the file's module with the ASE calculator on a small cell.

    Raises:
        ConfigError: ``out`` does not end in ``.pt``.
        ModelFileError: the model cannot be read or compiled.
    """
    out = Path(out)
    if out.suffix != ".pt":
        raise ConfigError(f"{out}: GROMACS loads NNPot models only from files ending in .pt; "
                          f"name it e.g. {out.with_suffix('.pt').name}.")
    model, source = lammps_deploy.model_and_source(model)
    scripted = script_gromacs_model(model, dtype)
    reference = model if dtype is None else lammps_deploy._cast(model, dtype)
    error = check_against_calculator(scripted, reference) if check else None
    metadata = lammps_deploy.deployed_metadata(scripted.model, source)
    metadata.update(format_version=FORMAT_VERSION, engine="GROMACS NNPot", inputs=list(INPUTS),
                    units={"energy": "kJ/mol", "length": "nm", "forces": "kJ/mol/nm"})
    lammps_deploy.save_deployed(scripted, out, metadata)
    return GromacsDeployment(out, metadata, error)


def mdp_lines(metadata: dict[str, Any], model_file: str) -> str:
    """The NNPot options of an ``.mdp`` for a deployed model (pure NNP: the whole System).

    The pair-list inputs of GROMACS 2026 follow as comments, with a pair cutoff of the
    model's cutoff plus 0.1 nm.
    """
    cutoff_nm = float(metadata["cutoff"]) / ANGSTROM_PER_NM
    lines = [
        "nnpot-active         = yes",
        f"nnpot-modelfile      = {model_file}",
        "nnpot-input-group    = System",
        "nnpot-model-input1   = atom-positions",
        "nnpot-model-input2   = atom-numbers",
        "nnpot-model-input3   = box",
        "nnpot-model-input4   = pbc",
        "; GROMACS 2026 and later, rectangular boxes: its pair list (pair cutoff <= rlist)",
        "; nnpot-model-input5 = atom-pairs",
        "; nnpot-model-input6 = pair-shifts",
        f"; nnpot-pair-cutoff  = {cutoff_nm + 0.1:.2f}   ; nm: model cutoff {cutoff_nm:g} + 0.1",
    ]
    return "\n".join(lines) + "\n"


def read_gromacs_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in a model file written by :func:`deploy_gromacs`."""
    metadata = lammps_deploy.read_deployed_metadata(path)
    if metadata.get("engine") != "GROMACS NNPot":
        raise ModelFileError(f"{path}: a model deployed for LAMMPS, not GROMACS; write one with "
                             "`mlff deploy MODEL --engine gromacs --out model.pt`.")
    return metadata



def report_deploy(model: str, out: str, dtype: str | None, console: Any) -> int:
    """``mlff deploy MODEL --engine gromacs --out FILE``: write the file, print the .mdp options."""
    import time

    started = time.perf_counter()
    result = deploy_gromacs(model, out, dtype=dtype)
    metadata = result.metadata
    species = " ".join(metadata["symbols"])
    console.print(f"model    {result.model} (GROMACS NNPot; species {species}, "
                  f"cutoff {metadata['cutoff'] / ANGSTROM_PER_NM:g} nm, {metadata['dtype']})")
    if result.check_error is not None:
        console.print("check    called as GROMACS calls it = ASE calculator to "
                      f"{result.check_error:.1e} (relative)")
    console.print("mdp      options for your .mdp (docs/gromacs.md):")
    console.print(mdp_lines(result.metadata, result.model.name), end="")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0
