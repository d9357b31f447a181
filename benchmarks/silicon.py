"""A silicon force field from nothing with CP2K (PBE), validated against CP2K itself.

    OMP_NUM_THREADS=1 python benchmarks/silicon.py --out bench-out/silicon

Stages, each resumed where it stopped when the command is run again after a kill (the
active-learning loop and ab initio MD are crash-safe; every DFT result of the validation
is kept in OUT/reference.db and never recomputed):

1. ``test``: the held-out test set, ab initio MD (CP2K, Langevin 1000 K, 2 fs) of the
   8-atom cube, the 12-atom (100) slab and the 15-atom vacancy cell, 30 steps each, every
   5th step kept (``OUT/test/aimd_*.xyz``, 6 frames each); never seen by training or
   selection.
2. ``reference``: the DFT side of the crystal and phonon checks (below), which needs no
   model: run beside ``learn`` (``--stages reference``) on a second core.
3. ``learn``: ``mlff learn examples/silicon/learn.yaml --out OUT/learn`` (seeds from the
   diamond unit cell, a committee of MACE models, walkers over bulk 300-1500 K, NPT, a
   (100) slab and a vacancy).
4. ``retrain``: the final committee trained again from scratch on every label of the
   campaign (OUT/learn/labels.db, written to OUT/retrain/train.xyz: seeds added to
   ``initial.xyz`` after the loop ran are labelled by running ``learn`` again) with the training settings of ``learn.yaml``, in
   OUT/retrain (resumed member by member); the checks below then use OUT/retrain/model.mlff.
   It lets a change of the training settings be judged without new DFT.
5. ``validate``, ``md``, ``cost`` (independent: run them at once on several cores):
   ``mlff validate`` checks of the final committee against the same DFT: test-set errors
   per structure kind, the lattice constant and bulk modulus (EOS of the 2-atom cell),
   the elastic constants C11, C12, C44 (2-atom cell, ±0.5 % strains, internal positions
   relaxed), the unrelaxed vacancy formation energy (54-atom cell), unrelaxed (100) and
   (111) surface energies (16-atom slabs, two conventional cells thick), phonons at Γ, X and L (exact
   from the 16-atom 2x2x2 supercell: one displaced DFT calculation) in OUT/validate; NVE
   drift of the model (64 atoms, 0.5 ps NVT then 2 ps NVE at 2 fs) in OUT/md; the cost
   of one force call of CP2K and of the model on the 64-atom cube in OUT/cost (CPU time of
   the process and its children: CP2K's ranks), and beside it OUT/cost/models.json: the
   committee and one member, float64 and float32, through ASE, and the committee deployed
   for LAMMPS as an AOTInductor package (CPU time of one MD step).
6. ``report``: OUT/report.md and OUT/campaign.png: the learning curve (held-out force
   and energy MAE of each iteration's committee against the DFT labels it had), the DFT
   time per label, the validation's headlines, the wall time of every stage.

``--stages`` runs some of them (``--stages learn``); the machine's load changes the
times (the DFT times are recorded per label in OUT/learn/labels.db).
``--seed-labels examples/silicon/campaign_labels.xyz`` takes the 25 seeds' CP2K labels from
that file (when made with the settings of ``oracle.yaml`` as it is) instead of computing
them again, about 25 minutes of DFT; ``--model M`` runs ``validate``, ``md`` and ``cost``
on another model than the campaign's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import ase.db
import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "silicon"
sys.path.insert(0, str(EXAMPLE))
import make_data  # noqa: E402  (the example's structures)

STAGES = ("test", "reference", "learn", "retrain", "validate", "md", "cost", "report")
TEST_KINDS = ("bulk", "surface_100", "vacancy")
TEST_MD = {"temperature": 1000.0, "timestep": 2.0, "every": 5, "seed": 7}
TEST_STEPS = {"bulk": 30, "surface_100": 30, "vacancy": 30}  # 6 frames each
A0 = 5.43  # Å, start of the EOS search


class CachedReference(Calculator):
    """An ASE calculator that answers from an ASE database of earlier results, keyed by
    the exact structure (numbers, positions and cell to 1e-8 Å, periodicity), and asks the
    wrapped calculator otherwise; every new result is stored at once, so a validation
    killed midway recomputes nothing. Not for timing (the cost check gets the bare one)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, inner: Calculator, path: Path, settings: dict) -> None:
        super().__init__()
        self.inner = inner
        self.settings = json.dumps(settings, sort_keys=True)  # part of every key
        self.db = ase.db.connect(str(path))
        self.hits = self.misses = 0

    def key(self, atoms: Atoms) -> str:
        digest = hashlib.sha256(self.settings.encode())
        for array in (atoms.numbers, np.round(atoms.positions, 8), np.round(atoms.cell.array, 8),
                      atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        key = self.key(self.atoms)
        wanted = {"energy", "forces"} | ({"stress"} if "stress" in properties else set())
        row = next(iter(self.db.select(key=key)), None)
        if row is not None and all(p in row.data for p in wanted):
            self.hits += 1
            self.results = {p: np.asarray(row.data[p]) if p != "energy" else float(row.data[p])
                            for p in row.data}
            return
        self.misses += 1
        copy = self.atoms.copy()
        copy.calc = self.inner
        start = time.perf_counter()
        results = {"energy": float(copy.get_potential_energy()), "forces": copy.get_forces()}
        if "stress" in wanted:
            results["stress"] = copy.get_stress()
        seconds = time.perf_counter() - start
        if row is not None:
            self.db.delete([row.id])
        self.db.write(copy, key=key, seconds=seconds,
                      data={p: (v if p == "energy" else np.asarray(v)) for p, v in results.items()})
        self.results = results


def run_test_set(out: Path) -> list[Path]:
    """Ab initio MD of each kind, the kinds side by side (each resumed by ``mlff generate``
    itself; one CP2K rank each)."""
    import subprocess

    folder = out / "test"
    folder.mkdir(parents=True, exist_ok=True)
    paths, runs = [], []
    for i, kind in enumerate(TEST_KINDS):
        start = folder / f"start_{kind}.xyz"
        if not start.exists():
            atoms = {"bulk": make_data.cube, "surface_100": make_data.slab,
                     "vacancy": make_data.vacancy}[kind]()
            atoms.rattle(0.03, seed=100 + i)
            atoms.info["config_type"] = kind
            ase.io.write(start, atoms)
        target = folder / f"aimd_{kind}.xyz"
        expected = TEST_STEPS[kind] // TEST_MD["every"]
        if not (target.exists() and len(ase.io.read(target, ":")) >= expected):
            log = (folder / f"aimd_{kind}.log").open("a")
            runs.append((kind, log, subprocess.Popen(
                [str(Path(sys.executable).with_name("mlff")), "generate", start.name,
                 "--oracle", str(EXAMPLE / "oracle.yaml"), "--out", target.name,
                 "--temperature", str(TEST_MD["temperature"]),
                 "--steps", str(TEST_STEPS[kind]), "--timestep", str(TEST_MD["timestep"]),
                 "--every", str(TEST_MD["every"]), "--seed", str(TEST_MD["seed"])],
                cwd=folder, stdout=log, stderr=subprocess.STDOUT)))
        paths.append(target)
    failed = []
    for kind, log, run in runs:
        if run.wait() != 0:
            failed.append(kind)
        log.close()
    if failed:
        raise RuntimeError(f"the test AIMD of {', '.join(failed)} failed: see "
                           f"{folder}/aimd_<kind>.log")
    return paths


def test_frames(out: Path) -> list[Atoms]:
    """The held-out frames made so far, each with ``config_type`` = its kind."""
    frames = []
    for kind in TEST_KINDS:
        path = out / "test" / f"aimd_{kind}.xyz"
        for atoms in ase.io.read(path, ":") if path.exists() else []:
            atoms.info["config_type"] = kind
            frames.append(atoms)
    return frames


def run_learn(out: Path, seed_labels: Path | None = None) -> None:
    """``mlff learn``; with ``seed_labels`` (labels a store wrote, such as
    ``examples/silicon/campaign_labels.xyz``), the labels of ``initial.xyz``'s structures
    made with ``oracle.yaml``'s settings are copied into the campaign's store first and not
    computed again."""
    from mlff.active.config import load_learn_config
    from mlff.active.loop import learn
    from mlff.active.store import LabelStore, structure_key
    from mlff.oracles import load_oracle

    config = load_learn_config(EXAMPLE / "learn.yaml")
    if seed_labels is not None:
        settings = json.loads(json.dumps(load_oracle(config.oracle).settings))
        seeds = {structure_key(a) for a in ase.io.read(config.initial.structures, ":")}
        same = {a.info["structure_key"] for a in ase.io.read(seed_labels, ":")
                if json.loads(a.info.get("oracle_settings", "null")) == settings}
        (out / "learn").mkdir(parents=True, exist_ok=True)
        added = LabelStore(out / "learn" / "labels.db").import_extxyz(seed_labels, seeds & same)
        print(f"{seed_labels}: {added} seed labels imported ({len(seeds - same)} of the "
              f"{len(seeds)} seeds not there with these oracle settings)")
    learn(config, out / "learn", progress=True)


def run_retrain(out: Path, processes: int | None = None, warm_from: Path | None = None) -> None:
    """Train the final committee again, from scratch, on the campaign's labels with the
    ``train`` settings of ``learn.yaml``; the model keeps the campaign's record."""
    from mlff.active.config import load_learn_config, train_config
    from mlff.active.store import LabelStore
    from mlff.models.io import add_metadata, read_metadata
    from mlff.train.committee import train_committee

    labels = out / "retrain" / "train.xyz"
    labels.parent.mkdir(parents=True, exist_ok=True)
    if not labels.exists():  # every label of the store, the seeds added after a run included
        LabelStore(out / "learn" / "labels.db").write_extxyz(labels)
    # warm: started from an earlier committee's members (learn.yaml's retrain settings,
    # as the loop warm-starts each iteration) instead of from scratch
    warm = None if warm_from is None else str(warm_from.resolve() / "member_{member}" / "model.mlff")
    config = train_config(load_learn_config(EXAMPLE / "learn.yaml"), str(labels), warm_from=warm)
    if processes is not None:  # members side by side, one thread each, on idle cores
        config.committee.processes = processes
    result = train_committee(config, out_dir=out / "retrain", resume=True, progress=False)
    record = read_metadata(out / "learn" / "model.mlff").get("active_learning")
    if record is not None:
        count = len(ase.io.read(labels, ":"))
        how = "from scratch" if warm_from is None else "warm-started from the previous committee"
        add_metadata(result.model_path, "active_learning",
                     {**record, "labels": count,
                      "committee": f"final, retrained {how} on all {count} labels"})


def final_model(out: Path) -> Path:
    """The retrained committee when the ``retrain`` stage has run, else the campaign's."""
    retrained = out / "retrain" / "model.mlff"
    return retrained if retrained.exists() else out / "learn" / "model.mlff"


def validation_options():
    """The settings of every check (DFT-sized cells; see the module docstring)."""
    from mlff.validate.runner import ValidationOptions

    options = ValidationOptions()
    options.crystal.parts = ("eos", "elastic", "vacancy", "surfaces")
    options.crystal.eos_points = 9
    options.crystal.eos_range = 0.05
    options.crystal.vacancy_supercell = (3, 3, 3)  # 54 atoms, 4x4x4 k-points
    options.crystal.relax_defects = False
    options.crystal.surfaces = ((1, 0, 0), (1, 1, 1))
    options.crystal.surface_layers = 2             # 16 atoms: 7x7x2 and 6x6x2 k-points
    options.crystal.vacuum = 6.5                   # Å each side, as the campaign's slabs
    options.crystal.vacancy_tolerance_eV = 0.1
    options.phonons.supercell = (2, 2, 2)          # 16 atoms: Γ, X and L are exact
    options.phonons.path = "GXWKGLUWLK,UX"
    options.phonons.eos_points = options.crystal.eos_points  # the same DFT volumes
    options.phonons.eos_range = options.crystal.eos_range
    options.md.temperature_K = 300.0
    options.md.timestep_fs = 2.0
    options.md.time_ps = 2.0
    options.md.nvt_time_ps = 0.5
    options.md.max_drift_meV_per_atom_per_ps = 0.1
    options.cost.reference_calls = 1
    options.cost.warmup_calls = 0
    options.cost.min_speedup = 1e4
    return options


def primitive() -> Atoms:
    return bulk("Si", "diamond", a=A0)


def run_reference(out: Path) -> None:
    """The DFT side of the crystal and phonon checks, before any model exists: the checks
    of the DFT against itself, which fill OUT/reference.db so that ``validate`` finds
    every DFT result there (the DFT's structures do not depend on the model)."""
    from mlff.oracles import load_oracle
    from mlff.validate.checks import crystal, phonons

    oracle = load_oracle(EXAMPLE / "oracle.yaml")
    reference = CachedReference(oracle.make_calculator(), out / "reference.db",
                                oracle.settings)
    options = validation_options()
    folder = out / "reference-only"
    crystal.run(reference, primitive(), folder, reference=reference, options=options.crystal)
    phonons.run(reference, primitive(), folder, reference=reference, options=options.phonons)
    print(f"reference: {reference.hits} results from {out / 'reference.db'}, "
          f"{reference.misses} computed")


def validation_inputs(out: Path):
    """The held-out test set (all frames made so far), the 64-atom cube (MD, cost) and the
    2-atom cell (crystal, phonons)."""
    from mlff.validate import LabelledSet, ValidationInputs

    test_file = out / "test" / "heldout.xyz"
    ase.io.write(test_file, test_frames(out))
    cube64 = bulk("Si", "diamond", a=A0, cubic=True).repeat(2)
    return ValidationInputs(test_sets=[LabelledSet.from_file(test_file, "held-out AIMD")],
                            structure=cube64, crystal=primitive())


def run_validate(out: Path, checks: tuple[str, ...] = ("errors", "crystal", "phonons"),
                 folder: str = "validate", model_path: Path | None = None) -> None:
    """``mlff validate`` checks into OUT/<folder>: the DFT from OUT/reference.db, except
    for the timed cost check, which always calls CP2K."""
    from mlff.calculators.ase import MLFFCalculator
    from mlff.oracles import load_oracle
    from mlff.validate import run_validation

    model_path = model_path or final_model(out)
    oracle = load_oracle(EXAMPLE / "oracle.yaml")
    if "cost" in checks:
        reference = oracle.make_calculator()
    else:
        reference = CachedReference(oracle.make_calculator(), out / "reference.db",
                                    oracle.settings)
    name = f"{oracle.name} ({EXAMPLE.relative_to(ROOT) / 'oracle.yaml'})"
    run_validation(MLFFCalculator(str(model_path)), out / folder, validation_inputs(out),
                   reference=reference, checks=list(checks), options=validation_options(),
                   model_name=str(model_path), reference_name=name, log=print)
    if isinstance(reference, CachedReference):
        print(f"reference: {reference.hits} results from {out / 'reference.db'}, "
              f"{reference.misses} computed")


def run_cost(out: Path, model_path: Path | None = None) -> None:
    """The ``mlff validate`` cost check (CP2K against the committee), then the model side
    alone: the committee and one member in float64 and float32 through the ASE calculator,
    and the committee deployed for LAMMPS (AOTInductor package, float64 and float32; one
    MD step with `pair_style mlff`, committee deviation included) in OUT/cost/models.json.
    Speed-ups are ratios of CPU times (this process and its children), which the load of
    a shared machine does not inflate."""
    import torch

    from mlff.calculators.ase import MLFFCalculator
    from mlff.calculators.lammps.deploy import deploy
    from mlff.validate.checks.cost import threads, time_calls

    sys.path.insert(0, str(Path(__file__).parent))
    from lammps_vs_ase import run_child

    model = model_path or final_model(out)
    run_validate(out, ("cost",), "cost", model_path=model)
    report = json.loads((out / "cost" / "report.json").read_text())
    summary = report["checks"]["cost"]["summary"]
    reference_cpu_ms = summary["reference_cpu_ms_per_call"]
    member = model.parent / "member_0" / "model.mlff"
    structure = validation_inputs(out).structure
    rows = []

    def add(name: str, dtype: str, cpu_ms: float, wall_ms: float) -> None:
        rows.append({"model": name, "dtype": dtype, "median_cpu_ms": cpu_ms,
                     "median_wall_ms": wall_ms, "speedup": reference_cpu_ms / cpu_ms,
                     "load_average": os.getloadavg()[0]})
        print(rows[-1], flush=True)

    for name, path in (("committee of 3", model), ("one member", member)):
        if not path.exists():
            continue
        for dtype in (torch.float64, torch.float32):
            calc = MLFFCalculator(str(path), dtype=dtype)
            wall, cpu = time_calls(calc, structure, calls=20, warmup=2)
            add(f"{name}, ASE calculator", str(dtype).removeprefix("torch."),
                1000 * float(np.median(cpu)), 1000 * float(np.median(wall)))
    for dtype in ("float64", "float32"):
        directory = out / "cost" / f"lammps-aoti-{dtype}"
        if not (directory / "model.json").exists():  # compiling takes minutes: keep it
            deploy(str(model), directory, dtype=dtype, structure=structure, format="aoti")
        timed = run_child("--child-lammps", str(directory), "--steps", "50")
        add("committee of 3, LAMMPS (AOTInductor)", dtype, timed["cpu_ms"], timed["wall_ms"])
    (out / "cost" / "models.json").write_text(json.dumps(
        {"reference_cpu_ms": reference_cpu_ms, "reference_summary": summary, "models": rows,
         "threads": threads(), "load_average": os.getloadavg()}, indent=2))


def learning_curve(out: Path) -> list[dict]:
    """Held-out errors of each iteration's committee (and the final one) against its labels."""
    from mlff.calculators.ase import MLFFCalculator

    frames = test_frames(out)
    rows = []
    folders = sorted((out / "learn").glob("iter_*")) + [out / "learn" / "final"]
    final = out / "learn" / "final"
    runs = [(f.name, f / "train" / "model.mlff", f / "train.xyz") for f in folders]
    retrained = out / "retrain" / "train.xyz"  # every stored label, when written
    runs.append(("final, retrained", out / "retrain" / "model.mlff",
                 retrained if retrained.exists() else final / "train.xyz"))
    for name, model, train in runs:
        if not model.exists():
            continue
        labels = len(ase.io.read(train, ":")) if train.exists() else None
        calc = MLFFCalculator(str(model))
        de, df = [], []
        per_kind: dict[str, list[float]] = {}
        for labelled in frames:
            reference_e = labelled.get_potential_energy()
            reference_f = labelled.get_forces()
            atoms = labelled.copy()
            atoms.calc = calc
            de.append(abs(atoms.get_potential_energy() - reference_e) / len(atoms))
            err = np.abs(atoms.get_forces() - reference_f).ravel()
            df.extend(err)
            per_kind.setdefault(atoms.info["config_type"], []).extend(err)
        rows.append({"model": name, "labels": labels,
                     "energy_mae_meV_per_atom": 1000 * float(np.mean(de)),
                     "forces_mae_meV_per_A": 1000 * float(np.mean(df)),
                     **{f"forces_mae_{k}": 1000 * float(np.mean(v)) for k, v in per_kind.items()}})
    return rows


def label_times(out: Path) -> list[tuple[int, float]]:
    """(atoms, seconds) of every DFT label of the campaign, from the label store."""
    times = []
    with ase.db.connect(str(out / "learn" / "labels.db")) as db:
        for row in db.select():
            seconds = row.get("wall_time")
            if seconds is not None:
                times.append((row.natoms, float(seconds)))
    return times


def write_report(out: Path, walls: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = learning_curve(out)
    times = label_times(out)
    (out / "learning_curve.json").write_text(json.dumps(curve, indent=2))
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    labelled = [r for r in curve if r["labels"] is not None and "retrained" not in r["model"]]
    x = [r["labels"] for r in labelled]
    left.plot(x, [r["forces_mae_meV_per_A"] for r in labelled], "o-", label="forces (meV/Å)")
    left.plot(x, [r["energy_mae_meV_per_atom"] for r in labelled], "s-",
              label="energy (meV/atom)")
    for r in curve:  # the final labels, trained again with the learn.yaml of now
        if "retrained" in r["model"]:
            left.plot([r["labels"]], [r["forces_mae_meV_per_A"]], "o", color="C0", mfc="none",
                      ms=9, label="forces, retrained")
            left.plot([r["labels"]], [r["energy_mae_meV_per_atom"]], "s", color="C1",
                      mfc="none", ms=9, label="energy, retrained")
    left.axhline(50, color="grey", lw=0.8, ls="--")
    left.axhline(2, color="grey", lw=0.8, ls=":")
    left.set_xlabel("DFT labels in training")
    left.set_ylabel("held-out MAE")
    left.set_yscale("log")
    left.legend(fontsize="small")
    left.set_title("held-out AIMD test set", fontsize="medium")
    if times:
        atoms, seconds = np.array(times).T
        right.scatter(atoms, seconds, s=12)
        right.set_xlabel("atoms per label")
        right.set_ylabel("CP2K wall time per label (s)")
        right.set_title(f"{len(times)} labels, {seconds.sum() / 60:.0f} min of DFT",
                        fontsize="medium")
    figure.tight_layout()
    figure.savefig(out / "campaign.png", dpi=120)
    lines = ["# Silicon from nothing with CP2K", "",
             f"`{' '.join(sys.argv)}` on {platform.node()} ({os.cpu_count()} cores, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}).", "",
             "![campaign](campaign.png)", "",
             "| model | labels | held-out E MAE (meV/atom) | held-out F MAE (meV/Å) | "
             + " | ".join(f"F MAE {k}" for k in TEST_KINDS) + " |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in TEST_KINDS) + " |"]
    for r in curve:
        lines.append(f"| {r['model']} | {r['labels']} | {r['energy_mae_meV_per_atom']:.2f} | "
                     f"{r['forces_mae_meV_per_A']:.1f} | "
                     + " | ".join(f"{r.get(f'forces_mae_{k}', float('nan')):.1f}"
                                  for k in TEST_KINDS) + " |")
    for folder in ("validate", "phonons", "md", "cost"):
        report = out / folder / "report.json"
        if report.exists():
            data = json.loads(report.read_text())
            lines += ["", f"## {folder} ({folder}/report.md)", "",
                      "| quantity | model | reference | deviation | target met |",
                      "| --- | ---: | ---: | ---: | --- |"]
            for check in data["checks"].values():
                for h in check.get("headlines", []):
                    lines.append(f"| {h.get('quantity')} | {_fmt(h.get('model'))} {h.get('unit', '')}"
                                 f" | {_fmt(h.get('reference'))} | {_fmt(h.get('deviation'))} "
                                 f"{h.get('deviation_unit', '')} | {h.get('passed')} |")
    lines += ["", "| stage | wall (min) |", "| --- | ---: |"]
    lines += [f"| {k} | {v / 60:.1f} |" for k, v in walls.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(value) -> str:
    return "—" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-out/silicon")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, out of {','.join(STAGES)}")
    parser.add_argument("--train-processes", type=int, default=None,
                        help="members of the retrain stage trained at once (default: "
                             "learn.yaml's committee.processes)")
    parser.add_argument("--warm-from", type=Path, default=None,
                        help="retrain stage: start each member k from DIR/member_k/model.mlff "
                             "(an earlier retrain folder) with learn.yaml's warm-start settings")
    parser.add_argument("--seed-labels", type=Path, default=None,
                        help="learn stage: take the seeds' labels from this extxyz written by "
                             "a label store (examples/silicon/campaign_labels.xyz) where its "
                             "oracle settings are oracle.yaml's, instead of computing them")
    parser.add_argument("--model", type=Path, default=None,
                        help="validate, md and cost stages: check this model instead of the "
                             "campaign's final one")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    walls_path = out / "walls.json"
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    for stage in args.stages.split(","):
        if stage not in STAGES:
            parser.error(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        start = time.perf_counter()
        {"test": run_test_set, "reference": run_reference,
         "retrain": lambda o: run_retrain(o, args.train_processes, args.warm_from),
         "learn": lambda o: run_learn(o, args.seed_labels),
         "validate": lambda o: run_validate(o, model_path=args.model),
         "md": lambda o: run_validate(o, ("md",), "md", model_path=args.model),
         "cost": lambda o: run_cost(o, args.model),
         "report": lambda o: write_report(o, walls)}[stage](out)
        if stage != "report":
            walls[stage] = walls.get(stage, 0.0) + time.perf_counter() - start
            walls_path.write_text(json.dumps(walls, indent=2))


if __name__ == "__main__":
    main()
