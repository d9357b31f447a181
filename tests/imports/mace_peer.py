"""Build small mace-torch models and evaluate them with mace-torch's own calculator.

Runs in mace-torch's environment (not mlff's): ``python mace_peer.py SPEC.json OUT_DIR``.
SPEC lists models (``name``, ``model_class``, ``seed`` and the constructor arguments of
``mace.modules.MACE``/``ScaleShiftMACE`` as plain JSON, with interaction blocks and the
gate by name) and ``structures`` (an extended-XYZ file). For every model it writes
``NAME.model`` (the pickled module, as ``mace_run_train`` saves it), ``NAME.pt`` (the
state-dict export documented for mlff) and the float64 energies, forces and stresses of
every structure for every head, through ``MACECalculator``, to ``reference.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import torch

import mace  # before e3nn: mace makes e3nn's constants loadable under torch's weights_only
from mace import modules
from mace.calculators import MACECalculator
from e3nn import o3  # noqa: E402 (order above)

GATES = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "abs": torch.abs, "None": None}


def build(spec: dict) -> torch.nn.Module:
    """The mace-torch model of one spec entry, float64, seeded random weights."""
    torch.manual_seed(spec["seed"])
    kwargs = dict(spec["kwargs"])
    numbers = kwargs["atomic_numbers"]
    heads = kwargs.get("heads") or ["Default"]
    rng = np.random.default_rng(spec["seed"])
    energies = rng.normal(-3.0, 1.0, size=(len(heads), len(numbers)))
    kwargs["atomic_energies"] = energies if len(heads) > 1 else energies[0]
    kwargs["num_elements"] = len(numbers)
    kwargs["interaction_cls"] = modules.interaction_classes[kwargs["interaction_cls"]]
    kwargs["interaction_cls_first"] = modules.interaction_classes[kwargs["interaction_cls_first"]]
    kwargs["hidden_irreps"] = o3.Irreps(kwargs["hidden_irreps"])
    kwargs["MLP_irreps"] = o3.Irreps(kwargs["MLP_irreps"])
    if kwargs.get("edge_irreps"):
        kwargs["edge_irreps"] = o3.Irreps(kwargs["edge_irreps"])
    kwargs["gate"] = GATES[kwargs["gate"]]
    if spec["model_class"] == "ScaleShiftMACE":
        scale = rng.uniform(0.5, 2.0, size=len(heads))
        shift = rng.normal(0.0, 0.3, size=len(heads))
        kwargs["atomic_inter_scale"] = scale if len(heads) > 1 else float(scale[0])
        kwargs["atomic_inter_shift"] = shift if len(heads) > 1 else float(shift[0])
        model = modules.ScaleShiftMACE(**kwargs)
    else:
        model = modules.MACE(**kwargs)
    # fresh models have zero-initialised parts in some versions: give every weight a value
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.numel() and torch.count_nonzero(parameter) == 0 and "zeroed" not in name:
                parameter.normal_(0.0, 0.3)
    return model.double().eval()


def export_state_dict(model: torch.nn.Module, path: Path) -> None:
    """The state-dict export of the mlff docs (``{"mace_hyperparameters", "state_dict"}``)."""
    last = model.readouts[-1]
    gate = None
    if hasattr(last, "non_linearity"):
        act = last.non_linearity.acts[0]
        gate = None if act is None else act.f.__name__
    hyperparameters = {
        "model_class": type(model).__name__,
        "interaction_cls_first": type(model.interactions[0]).__name__,
        "interaction_cls": type(model.interactions[-1]).__name__,
        "avg_num_neighbors": float(model.interactions[0].avg_num_neighbors),
        "heads": list(model.heads),
        "gate": gate,
        "apply_cutoff": bool(getattr(model, "apply_cutoff", True)),
        "readout_cls": type(last).__name__,
        "hidden_irreps": str(model.products[0].linear.irreps_out),
        "use_so3": bool(getattr(model, "use_so3", False)),
        "edge_irreps": None if getattr(model, "edge_irreps", None) is None else str(model.edge_irreps),
        "use_edge_irreps_first": bool(getattr(model, "use_edge_irreps_first", False)),
        "mace_version": mace.__version__,
    }
    torch.save({"mace_hyperparameters": hyperparameters, "state_dict": model.state_dict()}, path)


def main(spec_path: str, out_dir: str) -> None:
    torch.set_default_dtype(torch.float64)
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    structures = ase.io.read(spec["structures"], ":")
    reference = {}
    for entry in spec["models"]:
        model = build(entry)
        torch.save(model, out / f"{entry['name']}.model")
        export_state_dict(model, out / f"{entry['name']}.pt")
        for head in entry["kwargs"].get("heads") or ["Default"]:
            calc = MACECalculator(models=model, device="cpu", default_dtype="float64", head=head)
            results = []
            for atoms in structures:
                atoms = atoms.copy()
                atoms.calc = calc
                stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else np.zeros((3, 3))
                results.append({"energy": float(atoms.get_potential_energy()),
                                "forces": atoms.get_forces().tolist(),
                                "stress": np.asarray(stress).tolist()})
            reference[f"{entry['name']}/{head}"] = results
    (out / "reference.json").write_text(json.dumps({"mace_version": mace.__version__,
                                                    "results": reference}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
