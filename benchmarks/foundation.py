"""Fine-tuned SevenNet-0 (naive and with replay) against MACE from scratch on ethanol.

    python benchmarks/foundation.py --n 10 25 50 100 200 --minutes 10 --out bench-out/foundation

For each number N of training frames (the first N of examples/ethanol's standard training
split; validation: the first ``--valid`` frames of its validation split) and each method,
trains with the same budget (``--minutes`` of training, set-up excluded; CPU time of the
run by default, ``--clock``, so that runs sharing a machine get equal computation):

- ``naive``: SevenNet-0 (imported with `mlff import sevennet-0`) fine-tuned on the N frames;
- ``replay``: the same with ``finetune.replay``: structures of other elements built with
  ase.build (bulk crystals, surfaces, molecules; ``replay_pool``), rattled and strained,
  labelled by SevenNet-0 itself and mixed in with weight ``--replay-weight``;
- ``multihead``: replay as above with ``finetune.multihead``: the replay structures
  train a second readout head (``foundation``) on the shared network, the N frames the
  default head (``main``); the drift is reported for both heads (the default head's in
  ``drift_*``, the foundation head's in ``foundation_head_drift_*``);
- ``scratch``: mlff MACE with the hyperparameters of examples/ethanol/mace.yaml;
- ``committee``: ``--committee`` members fine-tuned from SevenNet-0 on bootstrap resamples
  of the N frames, each with its own seed (data order) and ``--minutes`` of training
  (`mlff train` with a ``committee`` section, as ``mlff learn`` trains one); reports the
  Spearman rank correlation of the committee's predicted and true per-structure force
  error on the test frames. With ``--committee-recipes replay`` every other member also
  trains with replay (``committee.members``), so the members differ in how strongly they
  are held to SevenNet-0.

Fine-tuning (``naive``, ``replay``, ``committee``) uses ``--finetune-lr`` and, with
``--freeze``, keeps parameters of those prefixes fixed; ``--anchor`` λ adds the L2-SP
penalty λ·||θ − θ_SevenNet-0||² (``finetune.anchor``) to each; ``--adapters H C O``
fine-tunes element-locally (``finetune.adapters``: per-element adapters for those
elements, and only their weights train). The EMA of the weights warms up
(``training.ema_warmup``) unless ``--no-ema-warmup``.

Reports, per run: the test_MD force MAE (meV/Å, on the first ``--test-frames`` frames of
test_MD.xyz, through MLFFCalculator in float64) and, for the fine-tuned models, the
forgetting: the force RMSE between the model and SevenNet-0 itself on a held-out set of
the foundation's domain (other bulk crystals, surfaces and molecules than the replay
pool's; ``held_out_set``). Writes OUT/results.json (one record per run, appended as runs
finish, so a partial run keeps its results) and OUT/learning_curves.png.

The keys of the forgetting in each record (force RMSE from SevenNet-0, meV/Å, pooled
over all force components of the structures named):

- ``drift_other_elements_meV_per_A``, the headline: the held-out structures none of whose
  elements is in the fine-tuning data (H, C, O for ethanol): 9 crystals and surfaces and
  9 molecules, two rattled copies each; split into ``drift_other_crystals_meV_per_A``
  (crystals and surfaces) and ``drift_other_molecules_meV_per_A`` (molecules);
- ``drift_hco_meV_per_A``: the held-out molecules that contain elements of the
  fine-tuning data (PH3, H2S, SO2, CS2, NH3, HCl), where a different reference (the
  ethanol data's code and basis) is meant to change the model;
- ``drift_meV_per_A``: all held-out structures together.

Multi-head runs also give each with the prefix ``foundation_head_`` (the foundation
head's drift). Records of runs before the molecules of other elements were added
(no ``drift_other_molecules_meV_per_A``) had crystals and surfaces only in
``drift_other_elements_meV_per_A``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bcc110, bulk, fcc100, fcc111, molecule

import mlff
from mlff.data.readers import read_structures
from mlff.train.config import read_yaml
from mlff.train.trainer import train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ethanol"
METHODS = ("naive", "replay", "multihead", "scratch", "committee")


def _rattled(atoms: Atoms, seed: int, amplitude: float = 0.05) -> Atoms:
    atoms = atoms.copy()
    atoms.rattle(amplitude, seed=seed)
    return atoms


def _molecule(name: str) -> Atoms:
    atoms = molecule(name)
    atoms.center(vacuum=6.0)
    atoms.pbc = False
    return atoms


def replay_pool() -> list[Atoms]:
    """Foundation-domain structures the replay set is made of (elements besides H, C, O)."""
    structures = [
        bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Al", "fcc", a=4.05, cubic=True),
        bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64),
        bulk("MgO", "rocksalt", a=4.21), bulk("Fe", "bcc", a=2.87, cubic=True),
        bulk("Au", "fcc", a=4.08, cubic=True),
        fcc111("Cu", size=(2, 2, 3), vacuum=6.0), fcc100("Al", size=(2, 2, 3), vacuum=6.0),
    ]
    structures += [_molecule(name) for name in ("H2O", "CO2", "N2", "CH4", "PF3", "SiH4")]
    return structures


# elements of the held-out set (and the ethanol's): never in the wide replay pool's bulks
HELD_OUT_ELEMENTS = {"Ni", "Pd", "Ge", "K", "Cl", "Ga", "As", "W", "Pt", "Ag", "Mo", "P", "S",
                     "H", "C", "N", "O"}


def wide_replay_pool() -> list[Atoms]:
    """:func:`replay_pool` plus a 2x2x2 cell of every element whose ASE reference state is
    fcc, bcc, hcp or diamond (noble gases, Tc and the held-out elements excepted)."""
    from ase.data import chemical_symbols, reference_states

    structures = replay_pool()
    for z in range(3, 84):
        symbol, state = chemical_symbols[z], reference_states[z]
        if (state and state.get("symmetry") in ("fcc", "bcc", "hcp", "diamond")
                and symbol not in HELD_OUT_ELEMENTS | {"Ne", "Ar", "Kr", "Xe", "Tc"}):
            try:
                structures.append(bulk(symbol).repeat(2))
            except ValueError:  # a reference state ase.build.bulk cannot build alone
                continue
    return structures


# the molecules of the held-out set whose elements are all absent from the ethanol data
# (ASE's g2 geometries); the replay pool's PF3 and N2 are left out
OTHER_MOLECULES = ("SiCl4", "SiF4", "BCl3", "BF3", "AlCl3", "AlF3", "NF3", "ClF3", "P2")
# held-out molecules with H, C or O, the elements the ethanol data teach
HCO_MOLECULES = ("PH3", "SH2", "SO2", "CS2", "NH3", "HCl")


def held_out_set() -> list[Atoms]:
    """Foundation-domain structures absent from the replay pool, two rattled copies each:
    9 crystals and surfaces, the molecules :data:`OTHER_MOLECULES` and
    :data:`HCO_MOLECULES` (48 structures)."""
    structures = [
        bulk("Ni", "fcc", a=3.52, cubic=True), bulk("Pd", "fcc", a=3.89, cubic=True),
        bulk("Ge", "diamond", a=5.66), bulk("KCl", "rocksalt", a=6.29),
        bulk("GaAs", "zincblende", a=5.65), bulk("W", "bcc", a=3.16, cubic=True),
        fcc111("Pt", size=(2, 2, 3), vacuum=6.0), fcc100("Ag", size=(2, 2, 3), vacuum=6.0),
        bcc110("Mo", size=(2, 2, 3), vacuum=6.0),
    ]
    structures += [_molecule(name) for name in OTHER_MOLECULES + HCO_MOLECULES]
    return [_rattled(a, seed=100 * k + copy) for k, a in enumerate(structures) for copy in (1, 2)]


def forces_of(model_path: Path, structures: list[Atoms],
              head: str | None = None) -> list[np.ndarray]:
    """Forces (eV/Å) of each structure by the model (its readout head ``head``; default:
    the model's default), through MLFFCalculator in float64."""
    calc = mlff.MLFFCalculator(model_path, dtype="float64", head=head)
    forces = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        forces.append(atoms.get_forces())
    return forces


def test_force_mae(model_path: Path, frames: int) -> float:
    """Force MAE (meV/Å) on the first ``frames`` frames of test_MD.xyz."""
    structures = read_structures(EXAMPLES / "test_MD.xyz", require=("forces",))[:frames]
    predicted = forces_of(model_path, [s.atoms for s in structures])
    pairs = zip(predicted, structures, strict=True)
    errors = np.concatenate([(p - s.forces).ravel() for p, s in pairs])
    return float(1e3 * np.abs(errors).mean())


def drift(model_path: Path, reference: list[np.ndarray], structures: list[Atoms],
          head: str | None = None, taught: frozenset[int] = frozenset({1, 6, 8})) -> dict:
    """Force RMSE (meV/Å) of the model from the reference forces, by part of the held-out
    set (the keys of the module docstring). ``taught``: the atomic numbers of the
    fine-tuning data (H, C, O)."""
    predicted = forces_of(model_path, structures, head)

    def rmse(chosen: list[int]) -> float | None:
        if not chosen:
            return None
        return float(1e3 * np.sqrt(np.mean(np.concatenate(
            [(predicted[i] - reference[i]).ravel() ** 2 for i in chosen]))))

    with_taught = [i for i, a in enumerate(structures) if taught & set(a.numbers.tolist())]
    other = [i for i in range(len(structures)) if i not in with_taught]
    crystals = [i for i in other if structures[i].pbc.any()]
    molecules = [i for i in other if not structures[i].pbc.any()]
    return {"drift_meV_per_A": rmse(list(range(len(structures)))),
            "drift_other_elements_meV_per_A": rmse(other),
            "drift_other_crystals_meV_per_A": rmse(crystals),
            "drift_other_molecules_meV_per_A": rmse(molecules),
            "drift_hco_meV_per_A": rmse(with_taught)}


def write_split(out: Path, n: int, valid: int) -> tuple[Path, Path]:
    """Index files: the first n frames of the training split, the first ``valid`` of the
    validation split."""
    train = np.loadtxt(EXAMPLES / "split_train_indices.txt", dtype=int)[:n]
    held = np.loadtxt(EXAMPLES / "split_valid_indices.txt", dtype=int)[:valid]
    paths = out / f"train_{n}.txt", out / f"valid_{valid}.txt"
    np.savetxt(paths[0], train, fmt="%d")
    np.savetxt(paths[1], held, fmt="%d")
    return paths


def write_test(out: Path, frames: int) -> Path:
    """The first ``frames`` frames of test_MD.xyz, as a file (the committee's test set)."""
    path = out / f"test_MD_{frames}.xyz"
    if not path.exists():
        ase.io.write(path, ase.io.read(EXAMPLES / "test_MD.xyz", f":{frames}"))
    return path


def config_for(method: str, n: int, args, out: Path, sn0: Path, replay_file: Path) -> dict:
    train_idx, valid_idx = write_split(out, n, args.valid)
    data = {"train": str(EXAMPLES / "train.xyz"), "train_indices": str(train_idx),
            "valid_indices": str(valid_idx), "cache_dir": None}
    training = {"batch_size": args.batch_size, "valid_batch_size": 50, "max_epochs": 100000,
                "max_minutes": args.minutes, "budget_clock": args.clock,
                "ema_decay": 0.99, "grad_clip": 10.0,
                "ema_warmup": not args.no_ema_warmup,
                "amsgrad": True, "loss": {"energy_weight": 1.0, "forces_weight": 100.0},
                "scheduler": ({"name": "plateau", "factor": 0.8, "patience": 50, "min_lr": 1e-5}
                              if args.schedule == "plateau" else
                              {"name": "cosine", "min_lr": 0.0})}
    config = {"seed": args.seed, "dtype": "float32", "threads": args.threads, "data": data,
              "training": training}
    if method == "scratch":
        recipe = read_yaml(EXAMPLES / "mace.yaml")
        config["model"] = recipe["model"]
        data["e0s"] = str(EXAMPLES / "isolated_atoms.xyz")
        training["scheduler"] = recipe["training"]["scheduler"]  # its recipe, not --schedule
        training.update(lr=0.01, weight_decay=5e-7, stage_two={
            "start_fraction": 0.8, "energy_weight": 1000.0, "forces_weight": 100.0, "lr": 0.001})
        return config
    training["lr"] = args.finetune_lr
    config["finetune"] = {"init_from": str(sn0), "lr_factor": 1.0, "freeze": args.freeze,
                          "anchor": args.anchor, "adapters": args.adapters}
    count = args.replay_count if args.replay_count is not None else max(n, 10)
    if args.replay_train:  # the pool plus the N training structures (labels dropped)
        frames = ase.io.read(EXAMPLES / "train.xyz", ":")
        chosen = [frames[i] for i in np.loadtxt(train_idx, dtype=int).reshape(-1)]
        seeds = [*ase.io.read(replay_file, ":"), *(Atoms(a.numbers, a.positions) for a in chosen)]
        replay_file = out / f"replay_pool_train_{n}.xyz"
        ase.io.write(replay_file, seeds)
    replay = {"structures": str(replay_file), "count": count, "rattle": 0.05, "strain": 0.02,
              "weight": args.replay_weight}
    if method in ("replay", "multihead"):
        config["finetune"]["replay"] = replay
    if method == "multihead":
        config["finetune"]["multihead"] = True
    if method == "committee":
        config["committee"] = {"size": args.committee, "bootstrap": True, "processes": 1}
        if args.committee_recipes == "replay":  # every other member with replay
            config["committee"]["members"] = [{}, {"finetune": {"replay": replay}}]
        data["test"] = str(write_test(out, args.test_frames))
    return config


def run_committee(config: dict, run_dir: Path) -> dict:
    """Train the committee; its test-set calibration and mean-prediction force MAE."""
    from mlff.train.committee import train_committee

    result = train_committee(config, run_dir, resume=True, progress=False)
    test = result.calibration.get("test", {})
    return {"committee_model": str(result.model_path),
            "spearman_test": test.get("spearman"),
            "spearman_valid": result.calibration.get("valid", {}).get("spearman"),
            "mean_predicted_meV_per_A": test.get("mean_predicted_meV_per_A"),
            "mean_observed_meV_per_A": test.get("mean_observed_meV_per_A")}


def _label(record: dict) -> str:
    return record.get("label") or record["method"]


# settings a results.json record is compared on before a run is skipped as done, with the
# values of records written before the setting existed
_SETTINGS = {"clock": "wall", "schedule": "plateau", "finetune_lr": 1e-3, "replay_weight": 1.0,
             "anchor": 0.0}


def done_before(results: list[dict], method: str, n: int, base: dict) -> bool:
    """Whether ``results`` hold the run (method, n) at these settings; a record of the same
    run at other settings is an error, as its run folder would be resumed."""
    for record in results:
        if record["method"] != method or record["n"] != n or record["minutes"] != base["minutes"]:
            continue
        keys = ("clock",) if method == "scratch" else tuple(_SETTINGS)
        differ = [k for k in keys if record.get(k, _SETTINGS[k]) != base[k]]
        if differ:
            raise SystemExit(f"{method} N={n} was run in this --out folder with other "
                             f"{', '.join(differ)}; give another --out")
        return True
    return False


def plot(results: list[dict], path: Path) -> None:
    """Test error and drift against N (one line per label, log-log), and the validation
    force MAE of every run against its training time on the budget's clock (one colour per
    label, fainter for smaller N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = list(dict.fromkeys(_label(r) for r in results if r["method"] != "sevennet-0"))
    markers = dict(zip(labels, "osd^v<>ph*", strict=False))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for label in labels:
        rows = sorted((r for r in results if _label(r) == label), key=lambda r: r["n"])
        left.plot([r["n"] for r in rows], [r["test_force_mae_meV_per_A"] for r in rows],
                  marker=markers[label], color=colours[label], label=label)
        rows = [r for r in rows if r.get("drift_other_elements_meV_per_A") is not None]
        if rows:
            middle.plot([r["n"] for r in rows],
                        [r["drift_other_elements_meV_per_A"] for r in rows],
                        marker=markers[label], color=colours[label], label=label)
    base = [r for r in results if r["method"] == "sevennet-0"]
    if base:
        left.axhline(base[0]["test_force_mae_meV_per_A"], color="grey", ls=":",
                     label="SevenNet-0 as imported")
    sizes = sorted({r["n"] for r in results if r["method"] != "sevennet-0"})
    shown = set()
    for record in results:
        log = Path(record.get("run_dir", "")) / "log.jsonl"
        if record["method"] in ("sevennet-0", "committee") or not log.is_file():
            continue
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        rows = [r for r in rows if "valid" in r]
        label = _label(record)
        right.plot([r["time"] / 60 for r in rows],
                   [r["valid"]["forces_mae_meV_per_A"] for r in rows], color=colours[label],
                   alpha=0.35 + 0.65 * (sizes.index(record["n"]) + 1) / len(sizes),
                   label=None if label in shown else label)
        shown.add(label)
    clocks = {r.get("clock", "wall") for r in results if r["method"] != "sevennet-0"}
    left.set(xscale="log", yscale="log", xlabel="ethanol training frames N",
             ylabel="test_MD force MAE (meV/Å)", title="ethanol test_MD")
    middle.set(xscale="log", xlabel="ethanol training frames N",
               ylabel="force RMSE from SevenNet-0 (meV/Å)",
               title="forgetting (held-out structures without H, C, O)")
    right.set(yscale="log", xlabel="training " + ("CPU " if clocks == {"cpu"} else "")
              + "time (min)", ylabel="validation force MAE (meV/Å)",
              title=f"learning curves (N = {', '.join(map(str, sizes))}: faint to solid)")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (left, middle):
        axis.set_xticks(sizes)
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(NullFormatter())
    for axis in (left, right):
        axis.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(NullFormatter())
    for axis in (left, middle, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what --minutes counts (training.budget_clock): the run's CPU "
                        "time, so runs get equal computation on a shared machine, or wall time")
    parser.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                        help="learning-rate schedule of the fine-tuning runs: plateau, or "
                        "cosine annealed to 0 over the budget")
    parser.add_argument("--valid", type=int, default=10, help="validation frames")
    parser.add_argument("--test-frames", type=int, default=1000, help="test_MD frames evaluated")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--replay-weight", type=float, default=1.0)
    parser.add_argument("--anchor", type=float, default=0.0,
                        help="finetune.anchor (L2-SP) of every fine-tuning run")
    parser.add_argument("--replay-pool", choices=("small", "wide"), default="small",
                        help="replay seeds: 15 structures, or those plus 44 elemental crystals")
    parser.add_argument("--replay-train", action="store_true",
                        help="replay seeds also include the N training frames (their "
                        "structures, labelled by SevenNet-0): the foundation's own answer "
                        "on the user's system, for multihead")
    parser.add_argument("--replay-count", type=int, default=None,
                        help="replay structures per epoch (default: max(N, 10))")
    parser.add_argument("--freeze", nargs="*", default=[],
                        help="parameter prefixes kept fixed in fine-tuning (model.layers.0 ...)")
    parser.add_argument("--adapters", nargs="*", default=[],
                        help="element-local fine-tuning (finetune.adapters): per-element "
                        "adapters for these elements (H C O), only element-local weights train")
    parser.add_argument("--no-ema-warmup", action="store_true",
                        help="EMA decay from the first step (as before training.ema_warmup)")
    parser.add_argument("--committee", type=int, default=3, help="members of `committee`")
    parser.add_argument("--committee-recipes", choices=("same", "replay"), default="same",
                        help="same: members differ by seed and bootstrap only; replay: every "
                        "other member also trains with replay (committee.members)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sevennet", default=None,
                        help="an imported SevenNet-0 .mlff (default: import it into OUT)")
    parser.add_argument("--label", default=None,
                        help="name of these runs in the plot (default: the method)")
    parser.add_argument("--plot-from", nargs="+", default=None, metavar="DIR",
                        help="only plot the results.json of these output folders into OUT")
    parser.add_argument("--out", default="bench-out/foundation")
    args = parser.parse_args()
    if args.plot_from:
        merged = []
        for folder in map(Path, args.plot_from):
            for record in json.loads((folder / "results.json").read_text()):
                record.setdefault("run_dir", str(folder / f"{record['method']}_{record['n']}"))
                merged.append(record)
                method = record["method"]
                if method in ("sevennet-0", "committee"):
                    continue
                label = method
                if method != "scratch":
                    label += f", lr {record.get('finetune_lr') or 1e-3:g}"
                if method in ("replay", "multihead"):
                    label += f", weight {record.get('replay_weight', 1.0):g}"
                    if record.get("replay_train"):
                        label += " (+ training structures)"
                if record.get("anchor"):
                    label += f", anchor {record['anchor']:g}"
                if record.get("adapters"):
                    label += f", adapters {' '.join(record['adapters'])}"
                if record.get("freeze"):
                    label += ", partly frozen"
                if method != "scratch" and record.get("schedule"):
                    label += f", {record['schedule']}"
                if record.get("clock", "wall") == "wall":
                    label += ", wall-clock budget"
                if "ema_warmup" not in record:
                    label += ", EMA without warm-up"
                record["label"] = label
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot(merged, Path(args.out) / "learning_curves.png")
        return 0
    warnings.simplefilter("ignore")  # the E0 refit's notice, at every run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sn0 = Path(args.sevennet) if args.sevennet else out / "sevennet-0.mlff"
    if not sn0.exists():
        mlff.import_model("sevennet-0", out=sn0)
    replay_file = out / "replay_pool.xyz"
    pool = wide_replay_pool() if args.replay_pool == "wide" else replay_pool()
    ase.io.write(replay_file, pool)
    held_out = held_out_set()
    reference = forces_of(sn0, held_out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    base = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
            "minutes": args.minutes, "clock": args.clock, "schedule": args.schedule,
            "test_frames": args.test_frames,
            "finetune_lr": args.finetune_lr, "replay_weight": args.replay_weight,
            "replay_count": args.replay_count, "replay_pool": args.replay_pool,
            "replay_train": args.replay_train,
            "freeze": args.freeze, "anchor": args.anchor, "adapters": args.adapters,
            "committee_recipes": args.committee_recipes,
            "ema_warmup": not args.no_ema_warmup}
    if not any(r["method"] == "sevennet-0" for r in results):
        results.append({**base, "method": "sevennet-0", "n": 0,
                        "test_force_mae_meV_per_A": test_force_mae(sn0, args.test_frames),
                        "drift_meV_per_A": 0.0, "drift_other_elements_meV_per_A": 0.0})
    for n in args.n:
        for method in args.methods:
            if done_before(results, method, n, base):
                continue
            run_dir = out / f"{method}_{n}"
            config = config_for(method, n, args, out, sn0, replay_file)
            start = time.perf_counter()
            if method == "committee":
                record = {**base, "method": method, "n": n, "members": args.committee,
                          "label": args.label or method, "run_dir": str(run_dir),
                          **run_committee(config, run_dir),
                          "total_seconds": round(time.perf_counter() - start, 1)}
                record["test_force_mae_meV_per_A"] = test_force_mae(
                    Path(record.pop("committee_model")), args.test_frames)
                print(json.dumps(record), flush=True)
                results.append(record)
                results_path.write_text(json.dumps(results, indent=1))
                continue
            result = train(config, run_dir, resume=True, progress=False)
            record = {**base, "method": method, "n": n, "epochs": result.epochs,
                      "schedule": config["training"]["scheduler"]["name"],
                      "label": args.label or method, "run_dir": str(run_dir),
                      "train_seconds": round(result.wall_seconds, 1),
                      "total_seconds": round(time.perf_counter() - start, 1),
                      "test_force_mae_meV_per_A": test_force_mae(result.model_path,
                                                                 args.test_frames),
                      **({"drift_meV_per_A": None} if method == "scratch" else
                         drift(result.model_path, reference, held_out))}
            if method == "multihead":
                record.update({f"foundation_head_{key}": value for key, value in drift(
                    result.model_path, reference, held_out, head="foundation").items()})
            print(json.dumps(record), flush=True)
            results.append(record)
            results_path.write_text(json.dumps(results, indent=1))
    for record in results:  # runs of an earlier version: the drift on today's held-out set
        model = out / f"{record['method']}_{record['n']}" / "model.mlff"
        if (record["method"] in ("naive", "replay", "multihead") and model.is_file()
                and "drift_other_molecules_meV_per_A" not in record):
            record.update(drift(model, reference, held_out))
            if record["method"] == "multihead":
                record.update({f"foundation_head_{key}": value for key, value in drift(
                    model, reference, held_out, head="foundation").items()})
            results_path.write_text(json.dumps(results, indent=1))
    plot(results, out / "learning_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
