"""``mlff learn``: the active-learning loop, crash-safe at every step.

Output folder (``out_dir``):
    config.yaml            the resolved config
    labels.db              every label and failure (:class:`~mlff.active.store.LabelStore`)
    iter_NNN/train.xyz     the labels the iteration trained on
    iter_NNN/train/        the committee run (:func:`mlff.train.committee.train_committee`)
    iter_NNN/explored.xyz  frames sampled by the walkers, with ``max_forces_std`` in info
    iter_NNN/candidates.xyz  the frames selected for labelling
    iter_NNN/uncertainty.png  histogram of the explored frames' disagreement
    iter_NNN/summary.json  the iteration's figures (written last: the iteration is done)
    final/                 a committee trained on all labels, when the last iteration added some
    model.mlff             the final committee
    report.md              one table over the iterations, with the figures

Each phase writes its output atomically (temporary file, then rename) and is skipped when
that output exists (:class:`~mlff.active.step.Step`), so a run killed at any moment (SIGKILL included) and started again
continues where it stopped. Labels are committed one transaction each as they arrive; a
structure with a stored label or failure is never sent to the oracle again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import torch
import yaml
from ase import Atoms

from mlff.active.config import LearnConfig, load_learn_config, train_config
from mlff.active.explore import Walker, WalkerSettings, run_walker
from mlff.active.report import uncertainty_histogram, write_report
from mlff.active.select import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    classify,
    select_random,
    select_uncertain,
)
from mlff.active.step import Step
from mlff.active.store import LabelStore, structure_key
from mlff.console import plain_console
from mlff.data.dataset import GraphDataset
from mlff.data.graph import collate, structure_to_graph, to_device
from mlff.data.readers import Structure
from mlff.errors import DataError
from mlff.oracles import LabelResult, label_many, load_oracle, make_executor, run_reference_md
from mlff.oracles.sanity import EnergyGuard
from mlff.train.trainer import evaluate
from mlff.uq.committee import Committee
from mlff.uq.descriptors import structure_descriptors
from mlff.models.io import add_metadata
from mlff.uq.io import load_model
from mlff.train.committee import train_committee


@dataclass
class LearnResult:
    """Where the loop ended."""

    out_dir: Path
    model_path: Path
    summaries: list[dict[str, Any]]
    stop_reason: str


class ActiveLearning:
    """One ``mlff learn`` run in ``out_dir`` (new or resumed)."""

    def __init__(self, config: LearnConfig, out_dir: str | Path, progress: bool = True) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
        self.console = plain_console(quiet=not progress, soft_wrap=True)
        self.progress = progress
        self.store = LabelStore(self.out_dir / "labels.db")
        self.oracle = load_oracle(config.oracle)
        self.rng_seed = config.seed

    # ---------------------------------------------------------------- the loop
    def run(self) -> LearnResult:
        """Run (or resume) the loop to its stop rule; returns the final committee."""
        c = self.config
        summaries: list[dict[str, Any]] = []
        reason = "max_iterations"
        with make_executor(c.executor) as executor:
            self.executor = executor
            self._initial()
            for n in range(1, c.stop.max_iterations + 1):
                summary = self._iteration(n)
                summaries.append(summary)
                write_report(self.out_dir, summaries, c)
                stop = self._stop_reason(summary)
                if stop is not None:
                    reason = stop
                    break
            model_path = self._final(summaries[-1])
        write_report(self.out_dir, summaries, c, final=self._final_record(model_path, reason))
        self.console.print(f"stopped ({reason}) after {len(summaries)} iteration(s); "
                           f"{self.store.count('ok')} labels")
        return LearnResult(self.out_dir, model_path, summaries, reason)

    def _iteration(self, n: int) -> dict[str, Any]:
        folder = self.out_dir / f"iter_{n:03d}"
        return Step.json(folder / "summary.json").run(lambda: self._run_iteration(n, folder))

    def _run_iteration(self, n: int, folder: Path) -> dict[str, Any]:
        folder.mkdir(exist_ok=True)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        committee_path = self._train(n, folder)
        timings["train_s"] = time.perf_counter() - start
        committee = load_model(committee_path)
        start = time.perf_counter()
        explored, stopped = self._explore(n, folder, committee_path)
        timings["explore_s"] = time.perf_counter() - start
        candidates = self._select(n, folder, explored, committee)
        start = time.perf_counter()
        labelled, failed = self._label(n, candidates)
        timings["label_s"] = time.perf_counter() - start
        return self._summarize(n, folder, committee, explored, stopped, candidates,
                               labelled, failed, timings)

    # ---------------------------------------------------------------- phases
    def _initial(self) -> None:
        """Import labelled data, label the initial structures, run reference MD (idempotent)."""
        init = self.config.initial
        for path in init.data:
            for index, atoms in enumerate(ase.io.read(path, ":")):
                if atoms.calc is None or "energy" not in atoms.calc.results:
                    raise DataError(f"{path}: frame {index} has no energy label; initial.data "
                                    "takes labelled structures (use initial.structures for others).")
                key = structure_key(atoms)
                if not self.store.has(key):
                    result = LabelResult(True, atoms, None, 0.0)
                    self.store.add_label(result, key, {"iteration": 0,
                                                       "oracle": f"imported:{Path(path).name}"})
        structures: list[Atoms] = []
        if init.structures is not None:
            structures += ase.io.read(init.structures, ":")
        if init.generate is not None:
            structures += self._generated()
        self._label(0, structures)
        if self.store.count("ok") < 2:
            raise DataError(
                f"{self.out_dir / 'labels.db'}: fewer than 2 initial labels; give initial.data, "
                "initial.structures or initial.generate."
            )

    def _generated(self) -> list[Atoms]:
        """Frames of reference MD (run once; kept in initial_generated.xyz)."""
        g = self.config.initial.generate
        step = Step.frames(self.out_dir / "initial_generated.xyz")
        if not step.done():
            self.console.print(f"reference MD with {self.oracle.name}: {g.steps} steps at "
                               f"{g.temperature} K")
            step.save(run_reference_md(ase.io.read(g.structure, 0), self.oracle,
                                       temperature_K=g.temperature, steps=g.steps,
                                       timestep_fs=g.timestep, every=g.every, seed=self.rng_seed))
        return step.load()  # as a resumed run reads them (the labels' keys match)

    def _train(self, n: int, folder: Path, name: str | None = None) -> Path:
        """Train iteration ``n``'s committee in ``folder`` (``name`` in messages: default
        ``iteration n``), warm-started from iteration n-1's when the config says so."""
        data = folder / "train.xyz"
        labels = Step(data, lambda path, _: self.store.write_extxyz(path), Step.frames(data).read)
        if not labels.done():
            labels.save(None)
        previous = self.out_dir / f"iter_{n - 1:03d}" / "train"
        warm = self.config.retrain.warm_start and n > 1 and (previous / "model.mlff").exists()
        config = train_config(self.config, str(data),
                              str(previous / "member_{member}" / "model.mlff") if warm else None)
        self.console.print(f"{name or f'iteration {n}'}: training a committee of "
                           f"{config.committee.size} on {self.store.count('ok')} labels")
        result = train_committee(config, out_dir=folder / "train", resume=True, progress=False)
        return result.model_path

    def _explore(self, n: int, folder: Path, model_path: Path) -> tuple[list[Atoms], list[int]]:
        path, record = Step.frames(folder / "explored.xyz"), Step.json(folder / "explore.json")
        if path.done() and record.done():
            return path.load(), record.load()["stopped_walkers"]
        e = self.config.explore
        starts = ase.io.read(e.structures, ":")
        walkers = [
            Walker(
                index=w,
                start=starts[w % len(starts)],
                temperature_K=e.temperatures[w % len(e.temperatures)],
                pressure_GPa=None if not e.pressures else e.pressures[w % len(e.pressures)],
                seed=int(np.random.SeedSequence([self.rng_seed, n, w]).generate_state(1)[0]),
            )
            for w in range(e.walkers)
        ]
        settings = WalkerSettings(steps=e.steps, timestep_fs=e.timestep,
                                  sample_every=e.sample_every, upper=self.config.select.upper,
                                  friction_per_fs=e.friction, threads=1,
                                  min_distance=e.min_distance)
        futures = [self.executor.submit(run_walker, str(model_path), walker, settings)
                   for walker in walkers]
        results = [f.result() for f in futures]
        frames = [frame for r in results for frame in r.frames]
        stopped = [r.index for r in results if r.stopped_at is not None]
        path.save(frames)
        record.save({"stopped_walkers": stopped,
                     "stopped_at": {r.index: r.stopped_at for r in results}})
        self.console.print(f"iteration {n}: {len(frames)} frames from {len(walkers)} walkers "
                           f"({len(stopped)} stopped by the watchdog)")
        return frames, stopped

    def _select(self, n: int, folder: Path, explored: list[Atoms], committee: Committee) -> list[Atoms]:
        step = Step.frames(folder / "candidates.xyz")
        if step.done():
            return step.load()
        s, stop = self.config.select, self.config.stop
        budget = s.max_labels
        if stop.max_labels is not None:
            budget = max(0, min(budget, stop.max_labels - self.store.count("ok")))
        fresh = [f for f in explored
                 if not f.info.get("collapsed") and not self.store.has(structure_key(f))]
        if s.strategy == "random":
            rng = np.random.default_rng([self.rng_seed, n, 7])
            chosen = select_random(fresh, budget, rng)
        else:
            descriptors = self._descriptors(committee, fresh)
            chosen = select_uncertain(fresh, descriptors, s.lower, s.upper, budget)
        return step.save([fresh[i] for i in chosen])

    def _descriptors(self, committee: Committee, frames: list[Atoms], batch: int = 16) -> np.ndarray:
        blocks = []
        for start in range(0, len(frames), batch):
            graphs = [structure_to_graph(Structure(atoms=a), committee.cutoff)
                      for a in frames[start:start + batch]]
            graph = to_device(collate(graphs), committee.device, committee.dtype)
            blocks.append(structure_descriptors(committee, graph).double().cpu().numpy())
        return np.concatenate(blocks) if blocks else np.zeros((0, 1))

    def _label(self, n: int, structures: list[Atoms]) -> tuple[int, int]:
        """Label the structures not yet in the store; each result committed on arrival."""
        keys = [structure_key(a) for a in structures]
        todo = [i for i, key in enumerate(keys) if not self.store.has(key)]
        todo = [i for k, i in enumerate(todo) if keys[i] not in {keys[j] for j in todo[:k]}]
        counts = {"ok": 0, "failed": 0}
        if not todo:
            return 0, 0
        pending = [structures[i] for i in todo]
        guard = EnergyGuard(self.store.labelled(), self.oracle.config.max_energy_deviation)

        def commit(index: int, result: LabelResult) -> None:
            result = guard.screen(result)  # a label far off the earlier ones is suspect
            atoms = pending[index]
            extra = {k: atoms.info[k] for k in ("walker", "step") if k in atoms.info}
            self.store.add(result, atoms, keys[todo[index]], self.oracle.provenance(n, **extra))
            counts["ok" if result.ok else "failed"] += 1

        self.console.print(f"iteration {n}: labelling {len(pending)} structure(s) with "
                           f"{self.oracle.name}")
        label_many(pending, self.oracle.config, self.executor, on_result=commit)
        return counts["ok"], counts["failed"]

    # ---------------------------------------------------------------- bookkeeping
    def _summarize(self, n, folder, committee, explored, stopped, candidates, labelled, failed,
                   timings) -> dict[str, Any]:
        s = self.config.select
        sigma = np.array([f.info["max_forces_std"] for f in explored])
        collapsed = np.array([bool(f.info.get("collapsed")) for f in explored], dtype=bool)
        classes = classify(np.where(collapsed, np.inf, sigma), s.lower, s.upper)
        fraction = {name: float(np.mean(classes == name)) if len(classes) else 0.0
                    for name in (ACCURATE, CANDIDATE, FAILED)}
        uncertainty_histogram(sigma, s.lower, s.upper, folder / "uncertainty.png",
                              title=f"iteration {n}")
        # the labels of this iteration's candidates, whenever they were committed
        batch = [self.store.status(structure_key(a)) for a in candidates]
        return {
            "iteration": n,
            "train_labels": len(Step.frames(folder / "train.xyz").load()),
            "explored_frames": int(len(explored)),
            "walkers_stopped": len(stopped),
            "walkers_collapsed": int(collapsed.sum()),
            "accurate_fraction": fraction[ACCURATE],
            "candidate_fraction": fraction[CANDIDATE],
            "failed_fraction": fraction[FAILED],
            "max_forces_std_median": float(np.median(sigma)) if len(sigma) else None,
            "selected": len(candidates),
            "labelled": int(sum(status == "ok" for status in batch)),
            "label_failures": int(sum(status == "failed" for status in batch)),
            "total_labels": self.store.count("ok"),
            "test": self._test_metrics(committee),
            **{k: round(v, 2) for k, v in timings.items()},
        }

    def _test_metrics(self, committee: Committee) -> dict[str, float] | None:
        if self.config.test is None:
            return None
        dataset = GraphDataset.from_file(self.config.test, committee.cutoff)
        metrics = evaluate(committee, dataset, 16, None, False)
        return {k: float(v) for k, v in metrics.items()
                if k.startswith(("forces_", "energy_")) and "meV" in k}

    def _stop_reason(self, summary: dict[str, Any]) -> str | None:
        stop = self.config.stop
        if stop.accurate_fraction is not None and summary["accurate_fraction"] >= stop.accurate_fraction:
            return "accurate_fraction"
        test = summary.get("test") or {}
        if stop.test_forces_mae is not None and test.get("forces_mae_meV_per_A", np.inf) <= stop.test_forces_mae:
            return "test_forces_mae"
        if stop.max_labels is not None and summary["total_labels"] >= stop.max_labels:
            return "max_labels"
        return None

    def _final(self, last: dict[str, Any]) -> Path:
        """The committee on all labels: the last iteration's when it added none, else a new
        one, unless that one is worse on the test set than the last iteration's (then the
        last iteration's is kept, and the report says so)."""
        n = last["iteration"]
        model = self.out_dir / "model.mlff"
        source = self.out_dir / f"iter_{n:03d}" / "train" / "model.mlff"
        which = f"iteration {n}"
        if last["labelled"] > 0:
            folder = self.out_dir / "final"
            folder.mkdir(exist_ok=True)
            trained = folder / "train" / "model.mlff"
            if not trained.exists():  # trained like an iteration n+1, warm-started from n
                trained = self._train(n + 1, folder, name="final")
            record_step = Step.json(folder / "final.json")
            if not record_step.done():
                test = self._test_metrics(load_model(trained))
                kept = worse_than(test, last.get("test"))
                record = {"test": test, "total_labels": self.store.count("ok"),
                          "kept": f"iteration {n}" if kept else "final"}
                if kept:
                    record["kept_reason"] = kept
                record_step.save(record)
            record = record_step.load()
            if record.get("kept", "final") == "final":
                source, which = trained, "final"
            else:
                self.console.print(f"final: the committee trained on all labels is worse on the "
                                   f"test set ({record['kept_reason']}); model.mlff is "
                                   f"{record['kept']}'s committee")
        def write_model(path: Path, _: None) -> None:
            shutil.copyfile(source, path)
            add_metadata(path, "active_learning", {
                "iterations": n, "labels": self.store.count("ok"),
                "failed_labels": self.store.count("failed"),
                "committee": which,
                "oracle": self.oracle.name, "oracle_settings": self.oracle.settings,
                "oracle_versions": self.oracle.versions,
                "explore": self.config.explore.model_dump(mode="json", exclude={"structures"}),
                "select": self.config.select.model_dump(mode="json")})

        Step(model, write_model, lambda path: path).save(None)
        return model

    def _final_record(self, model_path: Path, reason: str) -> dict[str, Any]:
        final = self.out_dir / "final" / "final.json"
        record = json.loads(final.read_text()) if final.exists() else {}
        return {"model": str(model_path), "stop_reason": reason, **record}


#: test-set errors compared between the final committee and the last iteration's
_COMPARED = {"energy_mae_meV_per_atom": "E MAE {:.3g} meV/atom",
             "forces_mae_meV_per_A": "F MAE {:.3g} meV/Å"}


def worse_than(final: dict[str, float] | None, previous: dict[str, float] | None) -> str | None:
    """Why ``final``'s test errors are worse than ``previous``'s, or None.

    Worse: the mean ratio final/previous of the energy and force MAEs (those both have)
    exceeds 1. Returns e.g. ``"E MAE 161 meV/atom against 13.9, F MAE ..."``.
    """
    if not final or not previous:
        return None
    names = [k for k in _COMPARED if k in final and k in previous and previous[k] > 0]
    if not names or np.mean([final[k] / previous[k] for k in names]) <= 1.0:
        return None
    return ", ".join(f"{_COMPARED[k].format(final[k])} against {previous[k]:.3g}" for k in names)


def learn(config: LearnConfig | str | Path, out_dir: str | Path, progress: bool = True) -> LearnResult:
    """Run or resume ``mlff learn`` (see the module docstring)."""
    if not isinstance(config, LearnConfig):
        config = load_learn_config(config)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return ActiveLearning(config, out_dir, progress).run()
