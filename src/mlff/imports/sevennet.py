"""Import SevenNet checkpoints (sevenn's ``.pth`` files) as mlff ``sevennet`` models.

A SevenNet checkpoint is a pickled dict with the training ``config`` and the
``model_state_dict``. It is read with ``torch.load(weights_only=True)`` and only numpy's
array-rebuilding globals allowed, so no code from the file runs; the hyperparameters are
read from the config and the weights mapped one by one onto
:class:`mlff.models.sevennet.SevenNet` (every key accounted for, every shape checked).

The pretrained models that the ``sevenn`` package ships are found by name in the
installed package, with no download: ``sevennet-0`` (11Jul2024), ``sevennet-0-22may2024``,
``sevennet-mf-0`` (multi-fidelity: pick the fidelity with ``head``) and ``sevennet-l3i5``.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from e3nn import o3

from mlff.errors import ModelFileError
from mlff.imports.common import declared_licence, imported_potential, installed_version, provenance
from mlff.models.potential import Potential
from mlff.models.registry import build_model

# name -> path inside the installed sevenn package
PRETRAINED = {
    "sevennet-0": "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "sevennet-0-11jul2024": "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "sevennet-0-22may2024": "pretrained_potentials/SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "sevennet-mf-0": "pretrained_potentials/SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
    "sevennet-l3i5": "pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
}
_ALIASES = {"7net-0": "sevennet-0", "7net-0_11jul2024": "sevennet-0",
            "7net-0_22may2024": "sevennet-0-22may2024", "7net-mf-0": "sevennet-mf-0",
            "7net-l3i5": "sevennet-l3i5"}

# sevenn's defaults for keys a config may lack (its DEFAULT_E3_EQUIVARIANT_MODEL_CONFIG)
_DEFAULTS: dict[str, Any] = {
    "irreps_manual": False, "lmax_edge": -1, "lmax_node": -1, "is_parity": True,
    "radial_basis": {"radial_basis_name": "bessel"},
    "cutoff_function": {"cutoff_function_name": "poly_cut"},
    "act_radial": "silu", "act_scalar": {"e": "silu", "o": "tanh"},
    "act_gate": {"e": "silu", "o": "tanh"}, "weight_nn_hidden_neurons": [64, 64],
    "use_bias_in_linear": False, "readout_as_fcn": False, "self_connection_type": "nequip",
    "interaction_type": "nequip", "_normalize_sph": True,
    "use_modal_node_embedding": False, "use_modal_self_inter_intro": False,
    "use_modal_self_inter_outro": False, "use_modal_output_block": False,
}
# module names of checkpoints written before sevenn 0.10
_OLD_NAMES = {"EdgeEmbedding": "edge_embedding",
              "reducing nn input to hidden": "reduce_input_to_hidden",
              "reducing nn hidden to energy": "reduce_hidden_to_energy",
              "rescale atomic energy": "rescale_atomic_energy"}
# keys that hold constants or empty tensors, not weights
_IGNORED = re.compile(
    r"(\.output_mask$|\.linear\.bias$|\.convolution\.weight$|_compiled_main_left_right\._w3j_"
    r"|^\d+_equivariant_gate\.)"
)


def pretrained_path(name: str) -> Path:
    """The checkpoint file of a SevenNet model shipped in the installed ``sevenn`` package.

    Raises:
        ModelFileError: unknown name, sevenn not installed, or the file is missing.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRETRAINED:
        raise ModelFileError(
            f"unknown SevenNet model {name!r}; known: {', '.join(sorted(PRETRAINED))}"
        )
    spec = importlib.util.find_spec("sevenn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"{name}: the sevenn package, which ships this model's weights, is not installed. "
            "Install it with `pip install sevenn==0.13.0` (or give the checkpoint's path)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / PRETRAINED[key]
    if not path.is_file():
        raise ModelFileError(
            f"{name}: {path} is missing from the installed sevenn "
            f"{installed_version('sevenn')}; mlff finds it in sevenn 0.13.0."
        )
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, read without running code from the file.

    Only numpy's array and dtype reconstruction is allowed besides torch's own tensors
    and plain Python data.

    Raises:
        ModelFileError: missing or unreadable file, other objects inside, or no
            ``config`` / ``model_state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such SevenNet checkpoint.")
    reconstruct = np._core.multiarray._reconstruct
    allowed = [
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
        (np._core.multiarray.scalar, "numpy._core.multiarray.scalar"),
        np.ndarray, np.dtype,
        *{type(np.dtype(t))
          for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)},
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(exc))
        if found is None:
            detail = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({detail}).") from None
        raise ModelFileError(
            f"{path}: not a plain SevenNet checkpoint (it refers to {found.group(1)}); mlff "
            "reads only tensors, numpy arrays and plain data and runs no code from the file."
        ) from None
    except Exception as exc:  # a corrupt pickle can fail anywhere inside torch.load
        raise ModelFileError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), dict) \
            or not isinstance(checkpoint.get("model_state_dict"), dict):
        raise ModelFileError(
            f"{path}: not a SevenNet checkpoint (expected a dict with 'config' and "
            "'model_state_dict', as sevenn writes with `sevenn train`)."
        )
    return checkpoint


def _version(config: dict[str, Any]) -> tuple[tuple[int, ...], str]:
    text = str(config.get("version", ""))
    parts = text.split(".")
    try:
        return tuple(int(p) for p in parts[:3]), (parts[3] if len(parts) > 3 else "")
    except ValueError:
        raise ModelFileError(f"checkpoint config has no valid sevenn version ({text!r})") from None


def _normalized_key(key: str) -> str:
    module, _, rest = key.partition(".")
    module = _OLD_NAMES.get(module, module)
    if " " in module:  # "0 self connection intro" -> "0_self_connection_intro"
        module = module.replace(" ", "_")
    return f"{module}.{rest.replace('denumerator', 'denominator')}"


class _Reader:
    """One checkpoint's config and weights, turned into mlff hyperparameters and a state dict."""

    def __init__(self, path: Path, checkpoint: dict[str, Any], head: str | None) -> None:
        self.path = path
        raw = checkpoint["config"]
        self.config = {**_DEFAULTS, **raw}
        self.version, self.suffix = _version(raw)
        if self.version < (0, 10, 0) and "_normalize_sph" not in raw:
            self.config["_normalize_sph"] = False  # sevenn's reading of pre-0.10 configs
        self.state = {_normalized_key(k): v for k, v in checkpoint["model_state_dict"].items()}
        self.head, self.modality = self._head(head)

    def error(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {message}")

    def _get(self, key: str) -> Any:
        if key not in self.config:
            raise self.error(f"the checkpoint's config lacks {key!r}")
        return self.config[key]

    def _head(self, head: str | None) -> tuple[str | None, int]:
        if not self.config.get("use_modality", False):
            if head is not None:
                raise self.error(f"--head {head}: this SevenNet model has one fidelity only.")
            return None, 0
        modal_map = {str(k): int(v) for k, v in self._get("_modal_map").items()}
        if head is None:
            raise self.error(f"a multi-fidelity model: choose the fidelity with --head "
                             f"(one of {', '.join(modal_map)}).")
        matches = [k for k in modal_map if k.lower() == head.lower()]
        if not matches:
            raise self.error(
                f"--head {head}: unknown fidelity; choose one of {', '.join(modal_map)}."
            )
        return matches[0], modal_map[matches[0]]

    def species(self) -> list[int]:
        type_map = {int(z): int(i) for z, i in self._get("_type_map").items()}
        order = sorted(type_map, key=type_map.__getitem__)
        if [type_map[z] for z in order] != list(range(len(order))):
            raise self.error("its type map does not number the species 0..n-1")
        return order

    def hyperparameters(self) -> dict[str, Any]:
        c = self.config
        unsupported = {
            "_model_type": (c.get("_model_type", "E3_equivariant_model"), "E3_equivariant_model"),
            "interaction_type": (c["interaction_type"], "nequip"),
            "act_radial": (c["act_radial"], "silu"),
            "act_scalar": (dict(c["act_scalar"]), {"e": "silu", "o": "tanh"}),
            "act_gate": (dict(c["act_gate"]), {"e": "silu", "o": "tanh"}),
            "use_bias_in_linear": (c["use_bias_in_linear"], False),
            "readout_as_fcn": (c["readout_as_fcn"], False),
        }
        for key, (value, wanted) in unsupported.items():
            if value != wanted:
                raise self.error(f"{key} = {value!r} is not supported (mlff's sevennet "
                                 f"architecture has {wanted!r}).")
        if (c.get("cuequivariance_config") or {}).get("use", False):
            raise self.error("saved with cuEquivariance layers; convert it back to e3nn with "
                             "sevenn (`sevenn_cp` / SevenNetCheckpoint.build_model) first.")
        num_layers = int(self._get("num_convolution_layer"))
        self_connection = c["self_connection_type"]
        if isinstance(self_connection, list):
            if len(set(self_connection)) != 1:
                raise self.error(
                    f"per-layer self-connection types {self_connection} are not supported"
                )
            self_connection = self_connection[0]
        if self_connection not in ("linear", "nequip"):
            raise self.error(f"self_connection_type {self_connection!r} is not supported")
        lmax = int(self._get("lmax"))
        l_sh = int(c["lmax_edge"]) if int(c["lmax_edge"]) > 0 else lmax
        if int(c["lmax_node"]) > 0 and c["irreps_manual"] is False:
            raise self.error("lmax_node different from lmax is not supported")
        basis = dict(c["radial_basis"])
        if basis.get("radial_basis_name") != "bessel":
            raise self.error(f"radial basis {basis.get('radial_basis_name')!r} is not supported")
        envelope = dict(c["cutoff_function"])
        name = envelope.get("cutoff_function_name")
        hp: dict[str, Any] = {
            "architecture": "sevennet",
            "cutoff": float(self._get("cutoff")),
            "num_layers": num_layers,
            "num_features": int(c.get("channel", 32)),
            "l_max": l_sh,
            "parity": bool(c["is_parity"]),
            "irreps": ([str(o3.Irreps(s)) for s in c["irreps_manual"]]
                       if c["irreps_manual"] else None),
            "normalize_sh": bool(c["_normalize_sph"]),
            "num_radial": int(basis.get("bessel_basis_num", 8)),
            "radial_mlp": [int(n) for n in c["weight_nn_hidden_neurons"]],
            "self_connection": self_connection,
            "conv_denominators": self.denominators(num_layers),
        }
        if name == "XPLOR":
            hp.update(cutoff_function="xplor", cutoff_on=float(envelope["cutoff_on"]))
        elif name == "poly_cut":
            hp.update(cutoff_function="polynomial",
                      envelope_exponent=int(envelope.get("poly_cut_p_value", 6)))
        else:
            raise self.error(f"cutoff function {name!r} is not supported")
        if self.head is not None:
            flags = {"embedding": "use_modal_node_embedding",
                     "linear_1": "use_modal_self_inter_intro",
                     "linear_2": "use_modal_self_inter_outro",
                     "readout": "use_modal_output_block"}
            hp.update(num_modalities=int(self._get("_number_of_modalities")),
                      modality=self.modality,
                      modal_inputs=[k for k, flag in flags.items() if c[flag]])
        return hp

    def denominators(self, num_layers: int) -> list[float]:
        values = []
        for k in range(num_layers):
            key = f"{k}_convolution.denominator"
            if key not in self.state:
                raise self.error(f"the weights lack {key}")
            values.append(float(self.state[key].reshape(-1)[0]))
        return values

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The checkpoint's weights under the names and shapes of ``model`` (mlff's SevenNet)."""
        target = model.state_dict()
        out: dict[str, torch.Tensor] = {}
        used: set[str] = set()

        def take(src: str, dst: str, value: torch.Tensor | None = None) -> None:
            if src not in self.state:
                raise self.error(f"the weights lack {src}")
            tensor = self.state[src] if value is None else value
            if dst not in target or target[dst].numel() != tensor.numel():
                raise self.error(f"{src} has shape {tuple(tensor.shape)}, which does not fit "
                                 f"the model its config describes")
            out[dst] = tensor.detach().reshape(target[dst].shape).to(target[dst].dtype)
            used.add(src)

        take("onehot_to_feature_x.linear.weight", "embedding.weight")
        num_layers = len(model.layers)
        for k, layer in enumerate(model.layers):
            self_connection = ("linear.weight" if layer.self_connection_is_linear
                               else "fc_tensor_product.weight")
            take(f"{k}_self_connection_intro.{self_connection}",
                 f"layers.{k}.self_connection.weight")
            take(f"{k}_self_interaction_1.linear.weight", f"layers.{k}.linear_1.weight")
            take(f"{k}_self_interaction_2.linear.weight", f"layers.{k}.linear_2.weight")
            used.add(f"{k}_convolution.denominator")
            depth = len(model.config.radial_mlp) + 1
            for d in range(depth - 1):
                take(f"{k}_convolution.weight_nn.layer{d}.weight",
                     f"layers.{k}.radial.layer{d}.weight")
            last = f"{k}_convolution.weight_nn.layer{depth - 1}.weight"
            if last not in self.state:
                raise self.error(f"the weights lack {last}")
            take(last, f"layers.{k}.radial.layer{depth - 1}.weight",
                 self._convolution_weights(k, layer, self.state[last]))
        if num_layers != model.config.num_layers:
            raise AssertionError("layer count")
        take("reduce_input_to_hidden.linear.weight", "readout_hidden.weight")
        take("reduce_hidden_to_energy.linear.weight", "readout.weight")
        scale = self.state.get("rescale_atomic_energy.scale")
        shift = self.state.get("rescale_atomic_energy.shift")
        if scale is None or shift is None:
            raise self.error("the weights lack the per-species scale and shift "
                             "(rescale_atomic_energy)")
        take("rescale_atomic_energy.scale", "scale_shift.scales", self._per_species(scale, "scale"))
        take("rescale_atomic_energy.shift", "scale_shift.shifts", self._per_species(shift, "shift"))
        if "edge_embedding.basis_function.coeffs" in self.state:
            take("edge_embedding.basis_function.coeffs", "basis.frequencies")
        else:  # trained with fixed frequencies n π / rc, sevenn's initial values
            out["basis.frequencies"] = target["basis.frequencies"]
        unknown = [k for k in self.state if k not in used and not _IGNORED.search(k)]
        if unknown:
            raise self.error(f"unexpected weights {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''}; this SevenNet variant is "
                             "not supported.")
        for key, value in target.items():  # constants of e3nn's code (Wigner 3j), our own
            out.setdefault(key, value)
        return out

    def _per_species(self, values: torch.Tensor, what: str) -> torch.Tensor:
        num_species = len(self.species())
        values = values.reshape(-1) if values.dim() <= 1 else values
        if values.dim() == 2:  # per fidelity (multi-fidelity shift/scale)
            if self.head is None or values.shape[0] <= self.modality:
                raise self.error(
                    f"per-fidelity {what} of shape {tuple(values.shape)} without a fidelity"
                )
            values = values[self.modality]
        if values.numel() == 1:
            values = values.expand(num_species)
        if values.numel() != num_species:
            raise self.error(f"{what} has {values.numel()} entries for {num_species} species")
        return values

    def _convolution_weights(self, k: int, layer, weights: torch.Tensor) -> torch.Tensor:
        """The radial MLP's last layer (hidden, weight_numel) in mlff's path order and signs.

        sevenn before 0.11 stored the paths in loop order (mlff's order) and, for some
        paths, Wigner-3j symbols of the opposite sign to e3nn >= 0.5 (the checkpoint keeps
        the symbols it was trained with): those paths' weights change sign. From 0.11 on the
        paths are sorted by output irrep.
        """
        tp = layer.tensor_product
        instructions = [(ins.i_in1, ins.i_in2, ins.i_out) for ins in tp.instructions]
        sizes = [tp.irreps_in1[i].mul for i, _, _ in instructions]
        if weights.dim() != 2 or weights.shape[1] != sum(sizes):
            raise self.error(f"{k}_convolution: radial weights of shape {tuple(weights.shape)} "
                             f"do not fit {sum(sizes)} tensor-product weights")
        old = self.version < (0, 11, 0) or (self.version == (0, 11, 0) and self.suffix == "dev0")
        if old:
            order = list(range(len(instructions)))
        else:  # the checkpoint's order: stably sorted by output block
            order = sorted(range(len(instructions)), key=lambda n: instructions[n][2])
        stored_start = {}
        position = 0
        for n in order:
            stored_start[n] = position
            position += sizes[n]
        blocks = []
        for n, (i1, i2, i3) in enumerate(instructions):
            block = weights[:, stored_start[n] : stored_start[n] + sizes[n]]
            l1, l2, l3 = tp.irreps_in1[i1].ir.l, tp.irreps_in2[i2].ir.l, tp.irreps_out[i3].ir.l
            if old and l1 > 0 and l2 > 0 and l3 > 0:
                block = block * self._w3j_sign(k, l1, l2, l3)
            blocks.append(block)
        return torch.cat(blocks, dim=1)

    def _w3j_sign(self, k: int, l1: int, l2: int, l3: int) -> float:
        key = f"{k}_convolution.convolution._compiled_main_left_right._w3j_{l1}_{l2}_{l3}"
        if key not in self.state:
            raise self.error(f"the weights lack {key}, needed to read weights of sevenn "
                             f"{'.'.join(map(str, self.version))}")
        stored = self.state[key].to(torch.float64)
        now = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
        if torch.allclose(stored, now, atol=1e-6):
            return 1.0
        if torch.allclose(stored, -now, atol=1e-6):
            return -1.0
        raise self.error(f"{key} is neither e3nn's Wigner 3j symbol nor its negative")


def load_sevennet(path: str | Path, head: str | None = None,
                  name: str | None = None) -> tuple[Potential, dict[str, Any]]:
    """Read a SevenNet checkpoint into an mlff Potential (float64) and its provenance.

    Args:
        path: the ``.pth`` checkpoint written by sevenn.
        head: the fidelity of a multi-fidelity model (e.g. ``"PBE"`` for SevenNet-MF-0).
        name: the pretrained model's name, when it came from the sevenn package.

    Raises:
        ModelFileError: the file is not a SevenNet checkpoint mlff can read exactly.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    reader = _Reader(path, checkpoint, head)
    hyperparameters = reader.hyperparameters()
    species = reader.species()
    try:
        model = build_model(hyperparameters, len(species))
    except ValueError as exc:
        raise reader.error(f"its config does not describe a model mlff can build ({exc})") from None
    state = reader.state_dict(model)
    model.load_state_dict(state, strict=True)
    hyperparameters = type(model).Config.model_validate(hyperparameters).model_dump()
    code_version = installed_version("sevenn") if name else None
    licence = (f"{declared_licence('sevenn') or 'unknown'} (the licence of the sevenn "
               f"{code_version} package that distributes these weights)" if name else
               "unknown: not recorded in the checkpoint; ask whoever trained it")
    record = provenance(
        path, "sevenn", code_version, licence,
        model=name, checkpoint_sevenn_version=str(checkpoint["config"].get("version")),
        fidelity=reader.head,
    )
    if not all(math.isfinite(float(v)) for v in hyperparameters["conv_denominators"]):
        raise reader.error("non-finite neighbour-sum divisors")
    return imported_potential(model, hyperparameters, species, record, torch.float64), record
