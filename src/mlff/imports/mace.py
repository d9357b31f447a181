"""Import mace-torch MACE and ScaleShiftMACE models into mlff's own MACE, exactly.

Two file kinds are read, neither by running code from the file:

* a state-dict export (``.pt``): ``{"mace_hyperparameters": {...}, "state_dict": {...}}``
  as the script in the foundation models guide writes it with mace-torch, read with
  ``torch.load(weights_only=True)``;
* a ``.model`` file (the pickled module ``mace_run_train`` saves, and MACE-MP-0, -OMAT,
  -OFF are distributed as): read with :mod:`mlff.imports.mace_pickle`, which rebuilds
  tensors and attributes only.

Everything about the architecture is read off the weights' shapes; the few settings
that leave no trace in them (interaction blocks, readout activation, heads,
``avg_num_neighbors``, ``apply_cutoff``, ``use_so3``, ``edge_irreps``, the hidden irreps'
parities) come from the export's hyperparameters or the pickled attributes. The weights are then mapped onto :class:`mlff.models.mace.MACE`:
most are copied; the message tensor product's paths are reordered (mace-torch sorts
them, and paths whose Wigner 3j symbol e3nn 0.4 negates change sign), the activations'
e3nn normalisation constants are folded into the next layer, a
head is cut out of multi-head readouts, and the symmetric contraction's weights are
re-expressed in mlff's coupling basis through the generalized Clebsch-Gordan (U)
matrices stored in the file, a linear change of basis checked to 1e-10.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from e3nn import o3

from mlff.errors import ModelFileError
from mlff.imports.mace_pickle import Stub, module_state_dict, read_pickled_module, submodule
from mlff.models.potential import Potential
from mlff.models.registry import build_model
from mlff.nn.dtype import default_dtype
from mlff.nn.symmetric_contraction import monomial_coefficients

EXPORT_HINT = (
    "Export it with mace-torch as a state dict (the script in the foundation models guide: "
    "torch.save({'mace_hyperparameters': ..., 'state_dict': model.state_dict()}, 'model.pt')) "
    "and import that file.")

_INTERACTIONS = {
    "RealAgnosticResidualInteractionBlock": "residual",
    "RealAgnosticInteractionBlock": "plain",
    "RealAgnosticDensityInteractionBlock": "density",
    "RealAgnosticDensityResidualInteractionBlock": "density_residual",
    "RealAgnosticAttResidualInteractionBlock": "att_residual",
    "RealAgnosticResidualNonLinearInteractionBlock": "nonlinear",
}
_GATES = {"silu": "silu", "tanh": "tanh", "abs": "abs", None: "none", "None": "none"}
_LICENCE_HINTS = {  # file-name fragments of the published foundation models
    "mace-mpa": "MIT (MACE-MPA-0)", "mace-omat": "ASL (Academic Software License)",
    "mace-off": "ASL (Academic Software License)", "mace-mp": "MIT (MACE-MP-0)",
    "mace-matpes": "ASL (Academic Software License)",
}


def load_mace(path: str | Path, head: str | None = None) -> tuple[Potential, dict[str, Any]]:
    """Read a mace-torch model file and rebuild it as an mlff Potential (float64).

    Args:
        path: a ``.model`` file (pickled module) or a state-dict export ``.pt``.
        head: for a multi-head model, the head to import (default: the only head, or
            one named ``default``).

    Returns:
        (potential ready for :func:`mlff.models.io.save_model`, provenance dict with
        ``source``, ``sha256``, ``code``, ``code_version``, ``licence``, ``head``).

    Raises:
        ModelFileError: unreadable file, a model kind or option mlff cannot reproduce,
            or an unknown head; the message names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file.")
    hyper, state = read_mace_file(path)
    heads = list(hyper.get("heads") or ["Default"])
    if head is None:
        defaults = [h for h in heads if h.lower() == "default"]
        if len(heads) > 1 and not defaults:
            raise ModelFileError(f"{path}: a multi-head model (heads: {', '.join(heads)}); "
                                 "choose one with --head NAME.")
        head = heads[0] if len(heads) == 1 else defaults[0]
    if head not in heads:
        raise ModelFileError(f"{path}: no head {head!r}; the model's heads are {', '.join(heads)}.")
    try:
        potential = _convert(hyper, state, heads.index(head), len(heads))
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a MACE model mlff can import ({type(exc).__name__}: "
                             f"{exc}).") from None
    provenance = {
        "source": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "code": "mace-torch",
        "code_version": hyper.get("mace_version") or "not recorded in the file",
        "model_class": hyper["model_class"],
        "head": head,
        "licence": _licence(path),
    }
    potential.metadata["provenance"] = provenance
    return potential, provenance


def _licence(path: Path) -> str:
    name = path.name.lower()
    for fragment, licence in _LICENCE_HINTS.items():
        if fragment in name:
            return f"{licence}, guessed from the file name; check where the file came from"
    return "unknown (set by whoever trained the weights)"


# ---------------------------------------------------------------------------- reading


def read_mace_file(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(hyperparameters, state dict) of a mace-torch file of either kind."""
    # torch.load hands TorchScript archives to torch.jit.load, which compiles their code
    if _is_torchscript(path):
        raise ModelFileError(f"{path}: a TorchScript (compiled) model. Import the .model file "
                             "it was made from, or a state-dict export (see the foundation "
                             "models guide).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (weights_only refuses pickled modules: read them below)
        payload = None
    if isinstance(payload, dict) and "state_dict" in payload:
        hyper = payload.get("mace_hyperparameters")
        if not isinstance(hyper, dict) or "model_class" not in hyper:
            raise ModelFileError(f"{path}: a state dict without 'mace_hyperparameters'. "
                                 + EXPORT_HINT)
        state = payload["state_dict"]
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelFileError(f"{path}: the state dict holds values that are not tensors.")
        return dict(hyper), dict(state)
    if isinstance(payload, dict):
        raise ModelFileError(f"{path}: a plain dict without 'state_dict' (a mace-torch training "
                             "checkpoint?). " + EXPORT_HINT)
    if payload is not None:
        raise ModelFileError(f"{path}: holds a {type(payload).__name__}, not a MACE model. "
                             + EXPORT_HINT)
    root = read_pickled_module(path)
    return _pickled_hyperparameters(root, path), module_state_dict(root)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pickled_hyperparameters(root: Stub, path: Path) -> dict[str, Any]:
    """The settings not visible in the weights, from a stubbed mace-torch module."""
    if not isinstance(root, Stub) or not root.qualname.startswith("mace."):
        raise ModelFileError(f"{path}: not a pickled mace-torch model "
                             f"(it holds {getattr(root, 'qualname', type(root).__name__)}).")
    interactions = submodule(root, "interactions")
    readouts = submodule(root, "readouts")
    names = list(interactions.attribute("_modules") or {}) if interactions else []
    readout_names = list(readouts.attribute("_modules") or {}) if readouts else []
    first = submodule(interactions, names[0]) if names else None
    last = submodule(interactions, names[-1]) if names else None
    last_readout = submodule(readouts, readout_names[-1]) if readout_names else None
    if first is None or last is None or last_readout is None:
        raise ModelFileError(f"{path}: a {root.name} without interactions or readouts.")
    gate, gate_constant = None, None
    activation = submodule(last_readout, "non_linearity.acts.0")
    if activation is not None:
        function = activation.attribute("f")
        gate = getattr(function, "qualname", "?").rsplit(".", 1)[-1]
        if gate == "getattr" and len(getattr(function, "args", ())) == 2:  # torch.tanh & co
            gate = str(function.args[1])
        gate_constant = activation.attribute("cst")
        if activation.attribute("_is_id"):
            gate_constant = 1.0
    heads = root.attribute("heads") or ["Default"]
    product_linear = submodule(root, "products.0.linear")
    hidden = _irreps_string(product_linear.attribute("irreps_out")) if product_linear else None
    # the gated nonlinearity's normalisation constants (non-linear interaction blocks)
    gate_constants = None
    nonlinearity = submodule(last, "equivariant_nonlin")
    if nonlinearity is not None:
        gate_constants = [float(nonlinearity.attribute("_scalar_cst")),
                          float(nonlinearity.attribute("_gate_cst"))]
    edge_irreps = root.attribute("edge_irreps")
    return {
        "hidden_irreps": hidden,
        "model_class": root.name,
        "interaction_cls_first": first.name,
        "interaction_cls": last.name,
        "avg_num_neighbors": float(first.attribute("avg_num_neighbors")),
        "heads": [str(h) for h in heads],
        "gate": gate,
        "gate_constant": gate_constant,
        "apply_cutoff": bool(root.attribute("apply_cutoff", True)),
        "readout_cls": last_readout.name,
        "edge_irreps": None if edge_irreps is None else (_irreps_string(edge_irreps) or "?"),
        "use_edge_irreps_first": bool(root.attribute("use_edge_irreps_first", False)),
        "use_so3": bool(root.attribute("use_so3", False)),
        "nonlinear_gate_constants": gate_constants,
        "mace_version": None,
    }


def _irreps_string(stub: Any) -> str | None:
    """``"4x0e+4x1o"`` from a stubbed e3nn Irreps (tuple of (mul, Irrep((l, p)))), or None."""
    try:
        parts = []
        for mul_ir in stub.args[0]:
            mul, irrep = mul_ir.args[0]
            l, p = irrep.args[0]
            parts.append(f"{int(mul)}x{int(l)}{'e' if p == 1 else 'o'}")
        return "+".join(parts)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------- converting


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _convert(hyper: dict[str, Any], sd: dict[str, torch.Tensor], head: int,
             num_heads: int) -> Potential:
    sd = {k: v.detach().to(torch.float64) if v.is_floating_point() else v for k, v in sd.items()}
    model_class = hyper["model_class"]
    if model_class not in ("MACE", "ScaleShiftMACE"):
        raise ModelFileError(f"a {model_class}; mlff imports MACE and ScaleShiftMACE models.")
    for key in ("interaction_cls_first", "interaction_cls"):
        if hyper[key] not in _INTERACTIONS:
            raise ModelFileError(f"interaction block {hyper[key]} is not supported (supported: "
                                 f"{', '.join(_INTERACTIONS)}).")
    if hyper.get("readout_cls", "NonLinearReadoutBlock") not in ("NonLinearReadoutBlock",
                                                                 "LinearReadoutBlock"):
        raise ModelFileError(f"readout {hyper['readout_cls']} is not supported.")
    edge_irreps = hyper.get("edge_irreps")
    if edge_irreps == "?":
        raise ModelFileError("its edge_irreps could not be read. " + EXPORT_HINT)
    unsupported = [k for k in sd if k.startswith(("joint_embedding", "embedding_readout"))]
    if unsupported:
        raise ModelFileError("models with extra embeddings (embedding_specs) are not supported.")
    numbers = [int(z) for z in sd["atomic_numbers"].tolist()]
    num_species = len(numbers)
    layers = int(sd["num_interactions"])
    channels = sd["node_embedding.linear.weight"].numel() // num_species
    # radial basis, envelope, transform
    if "radial_embedding.bessel_fn.bessel_weights" in sd:
        radial_basis, num_radial = "bessel", sd["radial_embedding.bessel_fn.bessel_weights"].numel()
    elif "radial_embedding.bessel_fn.gaussian_weights" in sd:
        radial_basis, num_radial = "gaussian", sd["radial_embedding.bessel_fn.gaussian_weights"].numel()
    else:
        radial_basis = "chebyshev"
        num_radial = None  # from the radial MLP below
    transform = "none"
    if "radial_embedding.distance_transform.q" in sd:
        transform = "agnesi"
    elif "radial_embedding.distance_transform.alpha" in sd:
        transform = "soft"
    if "interactions.0.conv_tp_weights.layer0.weight" in sd:  # e3nn's FullyConnectedNet
        sizes = [sd[f"interactions.0.conv_tp_weights.layer{k}.weight"].shape[0] for k in
                 range(_count_layers(sd, "interactions.0.conv_tp_weights.layer"))]
    else:  # the non-linear block's MLP (Linear, LayerNorm, SiLU): its input has 2 x C more
        linears = sorted(int(k.split(".")[4]) for k in sd
                         if k.startswith("interactions.0.conv_tp_weights.net.")
                         and k.endswith(".weight") and sd[k].dim() == 2)
        sizes = [sd[f"interactions.0.conv_tp_weights.net.{k}.weight"].shape[1] for k in linears]
        sizes[0] -= 2 * channels
    radial_mlp = sizes[1:]
    if num_radial is None:
        num_radial = sizes[0]
    # irreps: max_ell from the first U matrix (D = (max_ell + 1)^2), max_L from the product
    u1 = sd["products.0.symmetric_contractions.contractions.0.U_matrix_1"]
    max_ell = math.isqrt(u1.shape[0]) - 1
    correlation = [_count_u(sd, f"products.{i}.symmetric_contractions.contractions.0.U_matrix_")
                   for i in range(layers)]
    first_hidden_blocks = _count(sd, "products.0.symmetric_contractions.contractions.")
    max_l = first_hidden_blocks - 1 if layers > 1 else 0
    last_blocks = _count(sd, f"products.{layers - 1}.symmetric_contractions.contractions.")
    if last_blocks != 1:
        raise ModelFileError("the last layer keeps non-scalar features (keep_last_layer_irreps); "
                             "not supported.")
    if sd["products.0.linear.weight"].numel() != first_hidden_blocks * channels ** 2:
        raise ModelFileError("hidden irreps with unequal multiplicities are not supported.")
    hidden_irreps = None  # the default: channels x (0e + 1o + ...) up to max_L
    if layers > 1 and hyper.get("hidden_irreps"):
        given = o3.Irreps(hyper["hidden_irreps"])
        if {mul for mul, _ in given} != {channels} or given[0].ir != o3.Irrep("0e"):
            raise ModelFileError(f"hidden irreps {given}: mlff's MACE needs equal "
                                 f"multiplicities ({channels}) and 0e first.")
        if given != o3.Irreps([(channels, (l, (-1) ** l)) for l in range(max_l + 1)]):
            hidden_irreps, max_l = str(given), given.lmax
    num_readouts = _count(sd, "readouts.")
    mlp_key = f"readouts.{num_readouts - 1}.linear_1.weight"
    mlp_width = sd[mlp_key].numel() // channels // num_heads if mlp_key in sd else 0
    gate = _GATES.get(hyper.get("gate"), None)
    if mlp_width and gate is None:
        raise ModelFileError(f"readout activation {hyper.get('gate')!r} is not supported.")
    hyperparameters = {
        "architecture": "mace", "cutoff": float(sd["r_max"]), "num_channels": channels,
        "max_L": max_l, "max_ell": max_ell,
        "correlation": correlation[0] if len(set(correlation)) == 1 else correlation,
        "num_interactions": layers, "num_radial": num_radial,
        "envelope_exponent": int(sd["radial_embedding.cutoff_fn.p"]), "radial_mlp": radial_mlp,
        "readout_mlp": mlp_width, "readout_activation": gate or "silu",
        "readout_all_layers": num_readouts == layers,
        "interaction": _INTERACTIONS[hyper["interaction_cls"]],
        "interaction_first": _INTERACTIONS[hyper["interaction_cls_first"]],
        "radial_basis": radial_basis, "distance_transform": transform,
        "apply_cutoff": bool(hyper.get("apply_cutoff", True)),
        "avg_num_neighbors": float(hyper["avg_num_neighbors"]),
        "zbl": "pair_repulsion_fn.c" in sd,
        "hidden_irreps": hidden_irreps,
        "use_so3": bool(hyper.get("use_so3", False)),
        "edge_irreps": None if edge_irreps is None else str(o3.Irreps(edge_irreps)),
        "edge_irreps_first": bool(hyper.get("use_edge_irreps_first", False)),
    }
    if hyperparameters["zbl"]:
        hyperparameters["zbl_envelope_exponent"] = int(sd["pair_repulsion_fn.p"])
    if hyperparameters["zbl"] and "pair_repulsion_fn.covalent_radii" not in sd:
        raise ModelFileError("its ZBL term has an older mace-torch form (no covalent-radii "
                             "cutoff), which mlff does not reproduce.")
    if num_readouts not in (1, layers):
        raise ModelFileError(f"{num_readouts} readouts for {layers} layers.")
    model = build_model(hyperparameters, num_species)
    scale, shift = 1.0, 0.0
    if model_class == "ScaleShiftMACE":
        scale = float(torch.atleast_1d(sd["scale_shift.scale"])[head if sd["scale_shift.scale"].numel() > 1 else 0])
        shift = float(torch.atleast_1d(sd["scale_shift.shift"])[head if sd["scale_shift.shift"].numel() > 1 else 0])
    energies = torch.atleast_2d(sd["atomic_energies_fn.atomic_energies"])
    e0s = energies[head if energies.shape[0] > 1 else 0].tolist()
    with default_dtype(torch.float64):  # scale and shift unrounded
        potential = Potential(model, model.config.model_dump(), numbers, e0s, scale, shift)
    target = potential.state_dict()
    mapped = _map_weights(model, sd, hyper, head, num_heads, layers, num_readouts)
    for key, value in mapped.items():
        if target[key].shape != value.shape:
            raise ModelFileError(f"{key}: shape {tuple(value.shape)} from the file, mlff's MACE "
                                 f"needs {tuple(target[key].shape)}.")
        target[key] = value
    if hyperparameters["zbl"]:
        for name in ("c", "a_exp", "a_prefactor", "covalent_radii"):
            target[f"pair_terms.0.{name}"] = sd[f"pair_repulsion_fn.{name}"]
        # ScaleShiftMACE scales its pair term with the interaction energy
        target["pair_terms.0.factor"] = torch.tensor(scale, dtype=torch.float64)
    missing = [k for k in target if k.startswith("model.") and _needs_value(k) and k not in mapped
               and target[k].numel() > 0]
    if missing:
        raise ModelFileError(f"no value in the file for {', '.join(missing[:5])}.")
    potential.load_state_dict(target)
    return potential.eval()


def _needs_value(key: str) -> bool:
    return (key.endswith(("weight", "bias", ".alpha", ".beta"))
            or key.startswith("model.transforms") or ".weights." in key)


def _count_layers(sd: dict[str, torch.Tensor], prefix: str) -> int:
    return len([k for k in sd if k.startswith(prefix) and k.endswith(".weight")])


def _count_u(sd: dict[str, torch.Tensor], prefix: str) -> int:
    return len([k for k in sd if k.startswith(prefix)])


def _map_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor], hyper: dict[str, Any],
                 head: int, num_heads: int, layers: int,
                 num_readouts: int) -> dict[str, torch.Tensor]:
    """mlff state-dict entries (keys with the Potential's ``model.`` prefix) from mace's."""
    out: dict[str, torch.Tensor] = {"model.embedding.weight": sd["node_embedding.linear.weight"]}
    for name in ("q", "p", "a", "alpha", "covalent_radii"):
        key = f"radial_embedding.distance_transform.{name}"
        if key in sd:
            out[f"model.transforms.0.{name}"] = sd[key]
    for i in range(layers):
        ours, theirs = f"model.interactions.{i}", f"interactions.{i}"
        interaction = model.interactions[i]
        out[f"{ours}.linear_up.weight"] = sd[f"{theirs}.linear_up.weight"]
        if f"{theirs}.linear_res.weight" in sd:  # the non-linear block
            out.update(_map_nonlinear(interaction, sd, ours, theirs, hyper))
            _map_product(model, sd, out, i)
            continue
        if f"{theirs}.skip_tp.weight" in sd:
            out[f"{ours}.skip.weight"] = sd[f"{theirs}.skip_tp.weight"]
        else:  # att_residual: a linear skip
            out[f"{ours}.skip.linear.weight"] = sd[f"{theirs}.skip_linear.weight"]
        if f"{theirs}.linear_down.weight" in sd:
            out[f"{ours}.down.0.weight"] = sd[f"{theirs}.linear_down.weight"]
        if f"{theirs}.density_fn.layer0.weight" in sd:
            out[f"{ours}.density.0.layer0.weight"] = sd[f"{theirs}.density_fn.layer0.weight"]
        order = _path_order(interaction.conv)
        radial_layers = len(interaction.radial)
        for k in range(radial_layers):
            weight = sd[f"{theirs}.conv_tp_weights.layer{k}.weight"]
            if k == radial_layers - 1:
                weight = _permute_tp_weights(interaction.conv, weight, order,
                                             _path_signs(interaction.conv, sd, theirs))
            out[f"{ours}.radial.layer{k}.weight"] = weight
        out[f"{ours}.linear.weight"] = _permute_linear(interaction.linear, sd[f"{theirs}.linear.weight"],
                                                       order)
        _map_product(model, sd, out, i)
    for k in range(num_readouts):
        theirs = f"readouts.{k}"
        if f"{theirs}.linear.weight" in sd:
            out[f"model.readouts.{k}.weight"] = _head_columns(sd[f"{theirs}.linear.weight"], head,
                                                              num_heads)
            continue
        w1 = sd[f"{theirs}.linear_1.weight"]  # (C, H * P) flattened
        c_in = model.readouts[k][0].irreps_in.dim
        per_head = w1.numel() // c_in // num_heads
        w1 = w1.view(c_in, num_heads, per_head)[:, head].reshape(-1)
        w2 = sd[f"{theirs}.linear_2.weight"].view(num_heads, per_head, num_heads)[head, :, head]
        # mlff's readout: plain activation, linear of per_head inputs; mace-torch's: e3nn's
        # normalised activation and a linear of num_heads * per_head inputs
        w2 = w2 * _gate_constant(hyper) / math.sqrt(num_heads)
        out[f"model.readouts.{k}.0.weight"] = w1
        out[f"model.readouts.{k}.2.weight"] = w2.reshape(-1)
    return out


def _map_product(model: torch.nn.Module, sd: dict[str, torch.Tensor],
                 out: dict[str, torch.Tensor], i: int) -> None:
    """Layer i's product block: its linear map and the contraction weights (into ``out``)."""
    product = model.products[i]
    out[f"model.products.{i}.linear.weight"] = sd[f"products.{i}.linear.weight"]
    for j, weight in enumerate(_contraction_weights(product.contraction, sd,
                                                    f"products.{i}.symmetric_contractions",
                                                    model.num_species)):
        out[f"model.products.{i}.contraction.weights.{j}"] = weight


def _map_nonlinear(interaction: torch.nn.Module, sd: dict[str, torch.Tensor], ours: str,
                   theirs: str, hyper: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A RealAgnosticResidualNonLinearInteractionBlock onto mlff's ``nonlinear`` block."""
    out = {f"{ours}.{name}": sd[f"{theirs}.{name}"]
           for name in ("source_embedding.weight", "target_embedding.weight", "linear_res.weight",
                        "alpha", "beta")}
    out[f"{ours}.skip.linear.weight"] = sd[f"{theirs}.skip_tp.weight"]
    order = _path_order(interaction.conv)
    last = len(interaction.radial) - 1
    for k, layer in enumerate(interaction.radial):
        for name, _ in layer.named_parameters():
            value = sd[f"{theirs}.conv_tp_weights.net.{k}.{name}"]
            if k == last:  # outputs in mlff's path order (torch layout: (out, in) and (out,))
                value = _permute_tp_weights(interaction.conv, value.reshape(value.shape[0], -1).T,
                                            order, _path_signs(interaction.conv, sd, theirs)
                                            ).T.reshape(value.shape)
            out[f"{ours}.radial.{k}.{name}"] = value
    for k, layer in enumerate(interaction.density):
        for name, _ in layer.named_parameters():
            out[f"{ours}.density.{k}.{name}"] = sd[f"{theirs}.density_fn.net.{k}.{name}"]
    out[f"{ours}.linear_1.weight"] = _permute_linear(interaction.linear_1,
                                                     sd[f"{theirs}.linear_1.weight"], order)
    # mlff's gate has plain activations: their normalisation moves into linear_2
    scalar_constant, gate_constant = _nonlinear_gate_constants(hyper)
    factors = [scalar_constant if ir.l == 0 else gate_constant
               for _, ir in interaction.linear_2.irreps_in]
    out[f"{ours}.linear_2.weight"] = _scale_linear_inputs(interaction.linear_2,
                                                          sd[f"{theirs}.linear_2.weight"], factors)
    return out


def _nonlinear_gate_constants(hyper: dict[str, Any]) -> tuple[float, float]:
    """Second-moment constants of SiLU and sigmoid as mace-torch's gated block computes them."""
    if hyper.get("nonlinear_gate_constants"):
        scalar, gate = hyper["nonlinear_gate_constants"]
        return float(scalar), float(gate)
    z = torch.randn(1_000_000, generator=torch.Generator(device="cpu").manual_seed(0),
                    dtype=torch.float64)
    return tuple(f(z).pow(2).mean().pow(-0.5).item()  # type: ignore[return-value]
                 for f in (torch.nn.functional.silu, torch.sigmoid))


def _scale_linear_inputs(linear: o3.Linear, weight: torch.Tensor,
                         factors: list[float]) -> torch.Tensor:
    """An e3nn Linear's flat weights with input block k's paths multiplied by ``factors[k]``."""
    blocks, start = [], 0
    for ins in linear.instructions:
        size = int(np.prod(ins.path_shape))
        blocks.append(weight[start: start + size] * factors[ins.i_in])
        start += size
    if start != weight.numel():
        raise ModelFileError(f"linear layer: {weight.numel()} weights, expected {start}.")
    return torch.cat(blocks)


def _head_columns(weight: torch.Tensor, head: int, num_heads: int) -> torch.Tensor:
    """An e3nn Linear C x 0e -> H x 0e (weights (C, H) flattened) cut to head ``head``."""
    return weight.view(-1, num_heads)[:, head].contiguous()


def _gate_constant(hyper: dict[str, Any]) -> float:
    """The second-moment normalisation e3nn's ``nn.Activation`` applies to the readout gate."""
    if hyper.get("gate_constant") is not None:
        return float(hyper["gate_constant"])
    gate = hyper.get("gate")
    if gate in (None, "None"):
        return 1.0
    from e3nn.math import normalize2mom

    function = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "abs": torch.abs}[gate]
    constant = normalize2mom(function).cst
    return 1.0 if abs(constant - 1.0) < 1e-4 else float(constant)  # e3nn's identity shortcut


# ------------------------------------------------------------ message tensor product paths


def _path_order(conv: o3.TensorProduct) -> list[int]:
    """For each of mlff's paths (in order), its position in mace-torch's sorted order."""
    return list(o3.Irreps(conv.irreps_out).sort().p)


# (l1, l2, l3) up to 5 whose Wigner 3j symbol in e3nn 0.4.4 is minus e3nn >= 0.5's (computed
# by comparing the two versions' o3.wigner_3j); every other symbol agrees to 1e-10
_E3NN_04_NEGATED = {(1, 2, 2), (1, 3, 3), (1, 4, 4), (1, 5, 5), (2, 1, 2), (2, 2, 1), (3, 1, 3),
                    (3, 3, 1), (4, 1, 4), (4, 4, 1), (4, 4, 5), (4, 5, 4), (5, 1, 5), (5, 4, 4),
                    (5, 5, 1), (5, 5, 5)}


def _path_signs(conv: o3.TensorProduct, sd: dict[str, torch.Tensor], theirs: str) -> list[float]:
    """+1 or -1 per path of mlff's ``conv``: the sign of the file's Wigner 3j symbol.

    e3nn 0.4 (which mace-torch pins) has Wigner 3j symbols of the opposite sign to
    e3nn >= 0.5 for some (l1, l2, l3), e.g. (1, 2, 2), so those paths' weights change
    sign. A state-dict export keeps the symbols its tensor product used; a pickled
    ``.model`` keeps them inside compiled code mlff does not load, so there the e3nn 0.4
    table applies (mace-torch requires e3nn 0.4.4). Models whose irreps have the
    parities of spherical harmonics never have such paths.
    """
    signs = []
    for ins in conv.instructions:
        l1, l2 = conv.irreps_in1[ins.i_in1].ir.l, conv.irreps_in2[ins.i_in2].ir.l
        l3 = conv.irreps_out[ins.i_out].ir.l
        key = f"{theirs}.conv_tp._compiled_main_left_right._w3j_{l1}_{l2}_{l3}"
        if key not in sd:
            if max(l1, l2, l3) > 5:
                raise ModelFileError(f"a message path ({l1}, {l2}, {l3}) with l > 5: its sign "
                                     "convention is unknown to mlff. " + EXPORT_HINT)
            signs.append(-1.0 if (l1, l2, l3) in _E3NN_04_NEGATED else 1.0)
            continue
        stored, now = sd[key].to(torch.float64), o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
        if torch.allclose(stored, now, atol=1e-8):
            signs.append(1.0)
        elif torch.allclose(stored, -now, atol=1e-8):
            signs.append(-1.0)
        else:
            raise ModelFileError(f"{key} is neither e3nn's Wigner 3j symbol nor its negative.")
    return signs


def _permute_tp_weights(conv: o3.TensorProduct, weight: torch.Tensor, order: list[int],
                        signs: list[float] | None = None) -> torch.Tensor:
    """Columns of mace-torch's radial-MLP output layer in mlff's path order (and signs)."""
    sizes = [conv.irreps_in1[ins.i_in1].mul for ins in conv.instructions]
    sorted_sizes = [0] * len(sizes)
    for k, position in enumerate(order):
        sorted_sizes[position] = sizes[k]
    starts = np.concatenate([[0], np.cumsum(sorted_sizes)])
    signs = signs or [1.0] * len(sizes)
    columns = [weight[:, starts[order[k]]: starts[order[k]] + sizes[k]] * signs[k]
               for k in range(len(sizes))]
    return torch.cat(columns, dim=1)


def _permute_linear(linear: o3.Linear, weight: torch.Tensor, order: list[int]) -> torch.Tensor:
    """An e3nn Linear's weights for inputs in mace-torch's sorted order -> mlff's order."""
    sorted_in = o3.Irreps(linear.irreps_in).sort().irreps
    theirs = o3.Linear(sorted_in, linear.irreps_out)
    offsets, start = {}, 0
    for ins in theirs.instructions:
        size = int(np.prod(ins.path_shape))
        offsets[(ins.i_in, ins.i_out)] = (start, size)
        start += size
    if start != weight.numel():
        raise ModelFileError(f"linear layer: {weight.numel()} weights, expected {start}.")
    blocks = []
    for ins in linear.instructions:
        begin, size = offsets[(order[ins.i_in], ins.i_out)]
        blocks.append(weight[begin: begin + size])
    return torch.cat(blocks)


# ------------------------------------------------------------ symmetric contraction


def _contraction_weights(contraction: torch.nn.Module, sd: dict[str, torch.Tensor], prefix: str,
                         num_species: int) -> list[torch.Tensor]:
    """mlff's weights (order-major, then output irrep) from mace-torch's U and weights."""
    irreps_in = str(contraction.irreps_in)
    dim_in = contraction.irreps_in.dim
    out: list[torch.Tensor] = []
    for order in range(1, contraction.correlation + 1):
        for j, (_, ir) in enumerate(contraction.irreps_out):
            theirs = f"{prefix}.contractions.{j}"
            correlation = _count_u(sd, f"{theirs}.U_matrix_")
            if correlation != contraction.correlation:
                raise ModelFileError(f"{theirs}: correlation {correlation} differs between irreps.")
            name = "weights_max" if order == correlation else f"weights.{correlation - 1 - order}"
            weights = sd[f"{theirs}.{name}"]  # (species or 1, K, C)
            if weights.shape[0] == 1 and num_species > 1:  # use_agnostic_product
                weights = weights.expand(num_species, -1, -1)
            u = sd[f"{theirs}.U_matrix_{order}"].reshape(ir.dim, *([dim_in] * order), -1)
            change = _change_of_basis(u, irreps_in, str(ir), order)  # (K_mlff, K_mace)
            out.append(torch.einsum("qk,zkc->zqc", change, weights).contiguous())
    return out


def _change_of_basis(u: torch.Tensor, irreps_in: str, irrep_out: str, order: int) -> torch.Tensor:
    """T with Σ_k W_mace[k] U_mace[k] = Σ_q (T W_mace)[q] U_mlff[q] on symmetric products.

    Only U's part symmetric in its ν input indices acts on A⊗...⊗A; both sides are
    compared as coefficients of the sorted monomials A[i1]..A[iν].
    """
    u = u.to(torch.float64)
    num_k = u.shape[-1]
    tuples, coefficients = monomial_coefficients(irreps_in, irrep_out, order)
    dim_in, dim_out = u.shape[1], u.shape[0]
    mace_rows = {}
    for index in itertools.combinations_with_replacement(range(dim_in), order):
        total = torch.zeros(dim_out, num_k, dtype=torch.float64)
        for perm in set(itertools.permutations(index)):
            total += u[(slice(None), *perm)]
        mace_rows[index] = total  # (2L+1, K)
    ours = {tuple(t): row for t, row in zip(tuples.tolist(), coefficients)}  # (K_mlff, 2L+1)
    num_q = coefficients.shape[1] if len(tuples) else 0
    left, right = [], []
    for index, total in mace_rows.items():
        if index in ours:
            left.append(torch.as_tensor(ours[index]).T)  # (2L+1, K_mlff)
            right.append(total)
        elif total.abs().max() > 1e-10:
            raise ModelFileError("the file's U matrices couple products mlff's basis lacks.")
    if num_q == 0 or not left:
        return torch.zeros(num_q, num_k, dtype=torch.float64)
    a = torch.cat(left)  # (rows, K_mlff)
    b = torch.cat(right)  # (rows, K_mace)
    solution = torch.linalg.lstsq(a, b, driver="gelsd").solution
    residual = (a @ solution - b).abs().max().item()
    if residual > 1e-10 * max(1.0, b.abs().max().item()):
        raise ModelFileError(f"the file's U matrices are not a basis mlff can express "
                             f"(residual {residual:.1e}).")
    return solution
