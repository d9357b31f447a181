"""The structures and mace-torch model configurations the import tests compare on.

Structures: bulk crystals (fcc Cu, fcc Al, bcc Fe, diamond Si, hcp Mg), a triclinic
Cu-Al-Fe alloy cell, a Cu(111) slab with vacuum, an Al cell with a vacancy and an isolated
ethanol molecule, all rattled. Models: small (8 channels) so that the whole matrix runs in
seconds, covering max_L 0/1/2, correlation 1/2/3, 1-3 interactions, ZBL, the interaction
blocks, radial bases and transforms, the readout options and a two-head model.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule

ELEMENTS = [1, 6, 8, 12, 13, 14, 26, 29]  # H C O Mg Al Si Fe Cu


def structures() -> list[Atoms]:
    """The structures, rattled with a fixed seed."""
    rng = np.random.default_rng(7)
    out = [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Al", "fcc", a=4.05) * (2, 1, 1),
           bulk("Fe", "bcc", a=2.87, cubic=True) * (2, 1, 1), bulk("Si", "diamond", a=5.43),
           bulk("Mg", "hcp", a=3.21, c=5.21)]
    alloy = Atoms("Cu3AlFe2", scaled_positions=rng.uniform(0, 1, (6, 3)),
                  cell=[[4.1, 0.0, 0.0], [1.1, 3.9, 0.0], [0.7, 0.9, 4.3]], pbc=True)
    out.append(alloy)
    out.append(fcc111("Cu", size=(2, 2, 3), vacuum=5.0))
    vacancy = bulk("Al", "fcc", a=4.05, cubic=True) * (2, 1, 1)
    del vacancy[3]
    out.append(vacancy)
    ethanol = molecule("CH3CH2OH")
    ethanol.center(vacuum=4.0)
    ethanol.pbc = False
    out.append(ethanol)
    for atoms in out:
        atoms.info.clear()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
    return out


def _kwargs(**overrides) -> dict:
    base = dict(r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
                interaction_cls="RealAgnosticResidualInteractionBlock",
                interaction_cls_first="RealAgnosticResidualInteractionBlock",
                num_interactions=2, hidden_irreps="8x0e+8x1o", MLP_irreps="8x0e",
                avg_num_neighbors=9.0, atomic_numbers=ELEMENTS, correlation=3, gate="silu",
                radial_MLP=[8, 8, 8])
    base.update(overrides)
    return base


# name -> (model class, constructor arguments)
MODELS: dict[str, tuple[str, dict]] = {
    # the common configuration: ScaleShiftMACE, residual blocks, max_L 1, correlation 3, ZBL
    "mp_like": ("ScaleShiftMACE", _kwargs(max_ell=3, pair_repulsion=True)),
    "L0_corr1_one_layer": ("MACE", _kwargs(hidden_irreps="8x0e", correlation=1,
                                           num_interactions=1,
                                           interaction_cls_first="RealAgnosticInteractionBlock")),
    "L2_corr2_three_layers": ("ScaleShiftMACE", _kwargs(
        hidden_irreps="6x0e+6x1o+6x2e", correlation=[3, 2, 2], num_interactions=3,
        interaction_cls_first="RealAgnosticInteractionBlock", radial_type="gaussian",
        distance_transform="Agnesi", gate="tanh", radial_MLP=[10, 12])),
    "density_soft": ("ScaleShiftMACE", _kwargs(
        interaction_cls="RealAgnosticDensityResidualInteractionBlock",
        interaction_cls_first="RealAgnosticDensityInteractionBlock",
        distance_transform="Soft", apply_cutoff=False, pair_repulsion=True, gate="abs",
        num_polynomial_cutoff=6)),
    "plain_agnostic_last_readout": ("MACE", _kwargs(
        interaction_cls="RealAgnosticInteractionBlock",
        interaction_cls_first="RealAgnosticInteractionBlock", use_agnostic_product=True,
        use_last_readout_only=True, correlation=2, gate="None", radial_type="chebyshev",
        num_bessel=3, max_ell=1)),
    "att_residual": ("ScaleShiftMACE", _kwargs(
        interaction_cls="RealAgnosticAttResidualInteractionBlock", max_ell=1,
        hidden_irreps="4x0e+4x1o", num_interactions=3, correlation=2)),
    "multihead": ("ScaleShiftMACE", _kwargs(heads=["pbe", "r2scan"], pair_repulsion=True,
                                            MLP_irreps="4x0e")),
    # the non-linear block in both places; mace_run_train's default non-reduced U matrices
    "nonlinear": ("ScaleShiftMACE", _kwargs(
        interaction_cls="RealAgnosticResidualNonLinearInteractionBlock",
        interaction_cls_first="RealAgnosticResidualNonLinearInteractionBlock",
        use_reduced_cg=False, pair_repulsion=True)),
    # SO(3) harmonics with even hidden irreps, the envelope on the radial MLP's output
    "nonlinear_so3": ("ScaleShiftMACE", _kwargs(
        interaction_cls="RealAgnosticResidualNonLinearInteractionBlock", use_so3=True,
        hidden_irreps="6x0e+6x1e", apply_cutoff=False, radial_MLP=[8, 8])),
    # --use_so3 with --max_L: odd hidden vectors the even harmonics never reach
    "so3_max_L": ("MACE", _kwargs(use_so3=True,
                                  interaction_cls_first="RealAgnosticInteractionBlock")),
    # messages with their own irreps, also in the first layer
    "edge_irreps": ("ScaleShiftMACE", _kwargs(edge_irreps="6x0e+6x1o", use_edge_irreps_first=True,
                                              use_reduced_cg=False)),
    # odd scalars among the hidden features: A carries both parities after layer 1
    "odd_scalars": ("ScaleShiftMACE", _kwargs(hidden_irreps="4x0e+4x0o+4x1o", max_ell=1)),
}


# small enough to ship as mace-torch files (max_ell 1: small U matrices) for the golden tests
GOLDEN_FILES: dict[str, tuple[str, dict]] = {
    "tiny_zbl": ("ScaleShiftMACE", _kwargs(max_ell=1, hidden_irreps="4x0e+4x1o", MLP_irreps="4x0e",
                                           pair_repulsion=True, radial_MLP=[8, 8])),
}
# imported models shipped as .mlff files with mace-torch's results (no peer needed)
GOLDEN_IMPORTS = ("mp_like", "L2_corr2_three_layers", "density_soft", "nonlinear_so3",
                  "edge_irreps")


def spec(structures_path: str, models: dict[str, tuple[str, dict]] | None = None) -> dict:
    """The JSON spec ``mace_peer.py`` reads (default: :data:`MODELS`)."""
    models = MODELS if models is None else models
    return {"structures": structures_path,
            "models": [{"name": name, "model_class": cls, "seed": k, "kwargs": kwargs}
                       for k, (name, (cls, kwargs)) in enumerate(models.items())]}
