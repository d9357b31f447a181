"""Names of the graph-dict keys, defined once; shapes and units in the comments.

A graph dict (``dict[str, torch.Tensor]``) describes one structure or a batch of
structures with the same keys. ``N`` is the number of atoms, ``E`` the number of
directed edges and ``B`` the number of structures in the batch.
"""

from typing import Final

# (N, 3) float | Cartesian positions, Å
POSITIONS: Final[str] = "positions"
# (N,) int64 | atomic numbers
ATOMIC_NUMBERS: Final[str] = "atomic_numbers"
# (N,) int64 | index of each atom's element in the model's species list
SPECIES: Final[str] = "species"
# (B, 3, 3) float | lattice vectors as rows, Å; zeros when periodic in no direction
CELL: Final[str] = "cell"
# (B, 3) bool | periodicity along each lattice vector
PBC: Final[str] = "pbc"
# (2, E) int64 | sender i, receiver j of each directed edge (full list, both directions)
EDGE_INDEX: Final[str] = "edge_index"
# (E, 3) float | integer cell shifts S: r_ij = pos[j] - pos[i] + S @ cell
EDGE_SHIFT: Final[str] = "edge_shift"
# (E, 3) float | edge vectors r_ij, Å (computed by Potential, never stored)
EDGE_VECTORS: Final[str] = "edge_vectors"
# (E,) float | edge lengths |r_ij|, Å (computed by Potential, never stored)
EDGE_LENGTHS: Final[str] = "edge_lengths"
# (D,) any dtype | optional; its length D bounds every atom's number of edges: the width of
# the dense neighbour layout (mlff.nn.dense) in exported programs, which cannot read D
# from the edges; values unused
DENSE_WIDTH: Final[str] = "dense_width"
# (N,) int64 | index of the structure each atom belongs to
BATCH: Final[str] = "batch"
# (B,) int64 | number of atoms of each structure
NUM_ATOMS: Final[str] = "num_atoms"

# labels and predictions (ASE units and signs)
# (B,) float | total energy, eV
ENERGY: Final[str] = "energy"
# (N,) float | per-atom energy contributions, eV
NODE_ENERGY: Final[str] = "node_energy"
# (N, 3) float | forces, eV/Å
FORCES: Final[str] = "forces"
# (B, 3, 3) float | stress, eV/Å³, ASE sign (positive under tension)
STRESS: Final[str] = "stress"
# (B,) float | loss weight of each structure
WEIGHT: Final[str] = "weight"
# (B,) int64 | integer tag of each structure's config_type (see Dataset.config_types)
CONFIG_TYPE: Final[str] = "config_type"
# (B,) int64 | readout head of each structure (multi-head models, training only)
HEAD: Final[str] = "head"
# (B,) bool | whether the structure has an energy / forces / stress label
HAS_ENERGY: Final[str] = "has_energy"
HAS_FORCES: Final[str] = "has_forces"
HAS_STRESS: Final[str] = "has_stress"

LABELS: Final[tuple[str, ...]] = (ENERGY, FORCES, STRESS)
PER_ATOM_KEYS: Final[tuple[str, ...]] = (
    POSITIONS, ATOMIC_NUMBERS, SPECIES, BATCH, FORCES, NODE_ENERGY,
)
PER_STRUCTURE_KEYS: Final[tuple[str, ...]] = (
    CELL, PBC, NUM_ATOMS, ENERGY, STRESS, WEIGHT, CONFIG_TYPE,
    HAS_ENERGY, HAS_FORCES, HAS_STRESS,
)
PER_EDGE_KEYS: Final[tuple[str, ...]] = (EDGE_INDEX, EDGE_SHIFT)
