"""Silicon: active learning against random selection on the same CP2K budget.

    OMP_NUM_THREADS=1 python benchmarks/silicon_selection.py --out bench-out/silicon --draws 3

Uses the campaign of ``benchmarks/silicon.py`` in OUT (run its ``test`` and ``learn``
stages first). The campaign's first iteration explored with a committee trained on the
seed labels and labelled the frames its uncertainty picked. Here the same number of
frames is drawn at random from the same explored pool (``--draws`` independent draws),
labelled with the same oracle (``examples/silicon/oracle.yaml``), and one committee per
arm is trained from scratch with the training settings of ``learn.yaml`` on the seeds
plus that arm's frames: the uncertainty arm on the frames the campaign picked, each
random arm on its draw. Each committee's errors on the held-out AIMD frames (OUT/test)
are printed as a Markdown table and written to OUT/selection/results.json.

``--members 1`` trains one model per arm instead of a committee (a third of the training,
with one training seed's noise in each figure).

Everything is resumed after a kill: labels are stored as they arrive
(OUT/selection/labels.db, keyed by structure) and each committee resumes member by member.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).parent))
import silicon  # noqa: E402  (the campaign's paths, test frames and example)


def pool_and_picks(out: Path, iteration: int) -> tuple[list[Atoms], list[Atoms], list[Atoms]]:
    """The seeds the iteration's committee was trained on, the frames its walkers explored
    (those the loop could have labelled), and the labelled frames uncertainty picked."""
    from mlff.active.store import LabelStore, structure_key

    folder = out / "learn" / f"iter_{iteration:03d}"
    seeds = ase.io.read(folder / "train.xyz", ":")
    seen = {structure_key(a) for a in seeds}
    pool = [f for f in ase.io.read(folder / "explored.xyz", ":")
            if not f.info.get("collapsed") and structure_key(f) not in seen]
    picked_keys = {structure_key(a) for a in ase.io.read(folder / "candidates.xyz", ":")}
    store = LabelStore(out / "learn" / "labels.db")
    picked = [a for a in store.labelled() if structure_key(a) in picked_keys]
    return seeds, pool, picked


def label(frames: list[Atoms], store_path: Path, draw: int) -> list[Atoms]:
    """CP2K labels of ``frames`` (stored as they arrive; the stored ones are not redone)."""
    from mlff.active.config import load_learn_config
    from mlff.active.store import LabelStore, structure_key
    from mlff.oracles import label_many, load_oracle, make_executor

    config = load_learn_config(silicon.EXAMPLE / "learn.yaml")
    oracle = load_oracle(config.oracle)
    store = LabelStore(store_path)
    keys = [structure_key(a) for a in frames]
    todo = [i for i, key in enumerate(keys) if not store.has(key)]
    if todo:
        print(f"random draw {draw}: labelling {len(todo)} frame(s) with {oracle.name}",
              flush=True)
        with make_executor(config.executor) as executor:
            def commit(index: int, result) -> None:
                i = todo[index]
                extra = {k: frames[i].info[k] for k in ("walker", "step") if k in frames[i].info}
                store.add(result, frames[i], keys[i], oracle.provenance(draw, **extra))
            label_many([frames[i] for i in todo], oracle.config, executor, on_result=commit)
    labelled = {structure_key(a): a for a in store.labelled()}
    missing = [i for i, key in enumerate(keys) if key not in labelled]
    if missing:
        print(f"random draw {draw}: {len(missing)} frame(s) failed to label; trained without")
    return [labelled[key] for key in keys if key in labelled]


def train(frames: list[Atoms], folder: Path, members: int | None = None) -> Path:
    """A committee with learn.yaml's training settings, from scratch, on ``frames``
    (``members`` of them; default: learn.yaml's committee size)."""
    from mlff.active.config import load_learn_config, train_config
    from mlff.train.committee import train_committee

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "train.xyz"
    if not data.exists():
        ase.io.write(data, frames)
    config = train_config(load_learn_config(silicon.EXAMPLE / "learn.yaml"), str(data))
    if members == 1:  # one model: the plain trainer (a committee has two members or more)
        from mlff.train.trainer import train as train_one

        config.committee = None
        return train_one(config, out_dir=folder, resume=True, progress=False).model_path
    if members is not None:
        config.committee.size = members
    return train_committee(config, out_dir=folder, resume=True, progress=False).model_path


def held_out_errors(model: Path, heldout: Path) -> dict[str, float]:
    """Energy (meV/atom) and force (meV/Å) MAE on the held-out frames, forces per kind
    (``mlff evaluate``'s metrics)."""
    from mlff.uq.io import load_model
    from mlff.validate.evaluate import evaluate_file

    metrics = evaluate_file(load_model(model), heldout)["metrics"]
    return {"energy_mae_meV_per_atom": metrics["overall"]["energy_mae_meV_per_atom"],
            "forces_mae_meV_per_A": metrics["overall"]["forces_mae_meV_per_A"],
            **{f"forces_mae_{kind}": group["forces_mae_meV_per_A"]
               for kind, group in metrics["config_types"].items()}}


def kinds(frames: list[Atoms]) -> str:
    """How many frames of each size (8: bulk cube, 12: slab, 15: vacancy cell)."""
    sizes = [len(a) for a in frames]
    return ", ".join(f"{sizes.count(n)}x{n}" for n in sorted(set(sizes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-out/silicon")
    parser.add_argument("--iteration", type=int, default=1,
                        help="the campaign iteration whose pool and picks are compared")
    parser.add_argument("--draws", type=int, default=3, help="independent random draws")
    parser.add_argument("--members", type=int, default=None,
                        help="committee size of each arm (default: learn.yaml's); fewer "
                             "members cost less training and add training noise")
    args = parser.parse_args()
    from mlff.active.select import select_random

    out = Path(args.out).resolve()
    folder = out / "selection"
    folder.mkdir(parents=True, exist_ok=True)
    seeds, pool, picked = pool_and_picks(out, args.iteration)
    test = silicon.test_frames(out)
    heldout = folder / "heldout.xyz"
    ase.io.write(heldout, test)
    print(f"seeds {len(seeds)}, pool {len(pool)} explored frames, uncertainty picked "
          f"{len(picked)} ({kinds(picked)}); held-out frames {len(test)}", flush=True)
    arms = [("uncertainty", picked)]
    for draw in range(1, args.draws + 1):
        rng = np.random.default_rng([args.iteration, draw, 7])
        chosen = [pool[i] for i in select_random(pool, len(picked), rng)]
        arms.append((f"random {draw}", label(chosen, folder / "labels.db", draw)))
    results = []
    for name, frames in arms:
        start = time.perf_counter()
        model = train(seeds + frames, folder / name.replace(" ", "_"), args.members)
        row = {"arm": name, "labels": len(seeds) + len(frames), "picked": kinds(frames),
               **held_out_errors(model, heldout), "train_s": time.perf_counter() - start}
        results.append(row)
        print(json.dumps(row), flush=True)
    (folder / "results.json").write_text(json.dumps(
        {"results": results, "held_out_frames": len(test), "load_average": os.getloadavg(),
         "command": " ".join(sys.argv)}, indent=2))
    print("\n| selection | labels | frames picked (atoms) | E MAE (meV/atom) | F MAE (meV/Å) "
          "| F bulk | F (100) slab | F vacancy |\n| --- | ---: | --- | ---: | ---: | ---: | ---: "
          "| ---: |")
    for r in results:
        print(f"| {r['arm']} | {r['labels']} | {r['picked']} | {r['energy_mae_meV_per_atom']:.2f} "
              f"| {r['forces_mae_meV_per_A']:.1f} | {r.get('forces_mae_bulk', float('nan')):.1f} "
              f"| {r.get('forces_mae_surface_100', float('nan')):.1f} "
              f"| {r.get('forces_mae_vacancy', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
