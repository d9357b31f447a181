"""Train a committee: K ordinary training runs, combined into one calibrated model file.

Output folder layout (``out_dir``):
    config.yaml          the full resolved config (with its ``committee`` section)
    member_{k}/          an ordinary training run per member (see mlff.train.trainer), with
                         seed ``seed + k`` and, with ``committee.bootstrap``, a bootstrap
                         resample of the training structures
    model.mlff           the committee (all members in one file, with the calibration)
    calibration.json     the fitted map and how well it predicts the validation (and test) errors
    calibration.png      predicted versus observed errors on the validation data
    metrics.json         the committee's mean-prediction errors on validation (and test) data

Members run in parallel processes (``committee.processes``, default min(K, CPU cores)),
each with its share of the cores. Resuming resumes each unfinished member.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from mlff.console import plain_console
from mlff.data.example import example_record
from mlff.errors import ConfigError
from mlff.interface import argument
from mlff.train.config import ResolvedConfig, TrainConfig, load_config, validate_config
from mlff.train.data import load_training_data
from mlff.train.trainer import evaluate, train
from mlff.uq.calibration import calibration_metrics, fit_calibration, structure_values
from mlff.uq.committee import Committee
from mlff.uq.evaluate import committee_errors
from mlff.uq.io import load_model, save_committee
from mlff.uq.plots import calibration_plot

# below this many validation structures a power law or isotonic fit is not meaningful
_MIN_CALIBRATION_STRUCTURES = 5


@dataclass
class CommitteeResult:
    """Where a committee run went and how it did."""

    out_dir: Path
    model_path: Path
    member_paths: list[Path]
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    calibration: dict[str, Any]


def member_config(config: TrainConfig, k: int, threads: int | None = None) -> TrainConfig:
    """The config of member ``k``: seed ``seed + k``, its bootstrap seed, no committee.

    Entry ``k`` modulo their number of ``committee.members`` is merged into the config
    first (nested sections key by key). A ``{member}`` in ``finetune.init_from`` becomes
    ``k``, so that each member can start from its own predecessor
    (``previous/member_{member}/model.mlff``).

    Raises:
        ConfigError: the member's settings do not validate (naming the entry).
    """
    spec = config.committee
    if spec is not None and spec.members:
        config = _with_member_settings(config, spec.members[k % len(spec.members)],
                                       k % len(spec.members))
    bootstrap = spec is not None and spec.bootstrap
    data = config.data.model_copy(
        update={"bootstrap_seed": 1_000_003 * (config.seed + 1) + k if bootstrap else None}
    )
    update: dict[str, Any] = {"seed": config.seed + k, "committee": None, "data": data}
    if config.finetune is not None and "{member}" in config.finetune.init_from:
        update["finetune"] = config.finetune.model_copy(
            update={"init_from": config.finetune.init_from.replace("{member}", str(k))}
        )
    if threads is not None:
        update["threads"] = threads
    return config.model_copy(update=update)


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _with_member_settings(config: TrainConfig, settings: dict[str, Any],
                          index: int) -> TrainConfig:
    """``config`` with one ``committee.members`` entry merged in (its private state kept
    when ``finetune.init_from`` is unchanged)."""
    raw = _merged(config.model_dump(), settings)
    member = validate_config(raw, source=f"committee.members[{index}]")
    member._given_model_keys = config._given_model_keys
    if (isinstance(config, ResolvedConfig) and config.finetune is not None
            and member.finetune is not None
            and member.finetune.init_from == config.finetune.init_from):
        return ResolvedConfig.of(member, member.model, config._pretrained)
    return member


def check_member_settings(config: TrainConfig) -> None:
    """Raise if ``committee.members`` leaves every member's config as it was.

    Raises:
        ConfigError: every entry only repeats settings the config already has.
    """
    spec = config.committee
    if spec is None or not spec.members:
        return
    base = config.model_dump()
    if all(_with_member_settings(config, entry, i).model_dump() == base
           for i, entry in enumerate(spec.members)):
        raise ConfigError(
            "committee.members repeats the config's own settings, so every member is trained "
            "as without it. Give the entries settings that differ (e.g. finetune.replay for "
            "every other member) or remove committee.members.")


def member_dir(out_dir: Path, k: int) -> Path:
    """The folder of member ``k``."""
    return out_dir / f"member_{k}"


def _finished(path: Path) -> bool:
    return (path / "model.mlff").is_file() and (path / "metrics.json").is_file()


def _train_member(raw_config: dict[str, Any], out: str, resume: bool) -> str:
    """Train one member (in a worker process); returns its model path."""
    result = train(validate_config(raw_config), out_dir=out, resume=resume, progress=False)
    return str(result.model_path)


def train_committee(
    config: TrainConfig | dict | str | Path,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> CommitteeResult:
    """Train the members of ``config.committee``, combine and calibrate them.

    Args:
        config: a TrainConfig, a dict, or a YAML path, with a ``committee`` section.
        out_dir: output folder (default ``runs/<config name>``).
        resume: continue unfinished members; finished members are not retrained.
        progress: print progress.
        overrides: ``KEY=VALUE`` settings for a YAML config.

    Raises:
        ConfigError: no committee section, or an existing run without ``resume``.
    """
    name = "train"
    if isinstance(config, (str, Path)):
        name = Path(config).stem
        config = load_config(config, overrides)
    elif isinstance(config, dict):
        config = validate_config(config)
    if config.committee is None:
        raise ConfigError("train_committee needs a `committee` section (e.g. committee: 4).")
    check_member_settings(config)
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / name
    console = plain_console(quiet=not progress, highlight=False)
    size = config.committee.size
    started = [k for k in range(size) if (member_dir(out_dir, k) / "last.ckpt").exists()]
    if started and not resume:
        raise ConfigError(
            f"{out_dir} already holds a committee run. Use {argument('--resume', 'resume=True')} "
            f"to continue it, or choose another {argument('--out', 'out_dir')}."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))

    cores = os.cpu_count() or 1
    processes = min(config.committee.processes or min(size, cores), size)
    threads = config.threads or max(1, cores // processes)
    todo = [k for k in range(size) if not (resume and _finished(member_dir(out_dir, k)))]
    console.print(f"committee of {size}: training member(s) {todo} in {processes} process(es), "
                  f"{threads} thread(s) each")
    jobs = {k: (member_config(config, k, threads).model_dump(), str(member_dir(out_dir, k)),
                resume and k in started) for k in todo}
    if processes == 1:
        for k, job in jobs.items():
            _train_member(*job)
            console.print(f"member {k} done")
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            futures = {k: pool.submit(_train_member, *job) for k, job in jobs.items()}
            for k, future in futures.items():
                future.result()
                console.print(f"member {k} done")

    member_paths = [member_dir(out_dir, k) / "model.mlff" for k in range(size)]
    committee = Committee([load_model(p, single=True) for p in member_paths])
    return _combine(config, committee, out_dir, member_paths, console)


def _combine(config: TrainConfig, committee: Committee, out_dir: Path, member_paths: list[Path],
             console: Console) -> CommitteeResult:
    """Calibrate on the validation data, evaluate, and write the committee's files."""
    single = member_config(config, 0)
    data = load_training_data(single)
    compute_stress = config.training.loss.stress_weight > 0
    batch = config.training.valid_batch_size
    valid_errors = committee_errors(committee, data.valid, batch)
    sigma, observed = structure_values(valid_errors.forces_std, valid_errors.force_errors)
    method = config.committee.calibration
    if len(sigma) < _MIN_CALIBRATION_STRUCTURES:
        console.print(f"only {len(sigma)} validation structure(s) with forces: calibrating "
                      "by one scale factor")
        method = "scale"
    report: dict[str, Any] = {"calibration": None}
    calibration = None
    if len(sigma) > 0:
        calibration = fit_calibration(sigma, observed, method)
        committee.calibration = calibration.to_dict()
        report = {
            "calibration": calibration.to_dict(),
            "valid": calibration_metrics(calibration, valid_errors.forces_std,
                                         valid_errors.force_errors),
        }
        calibration_plot(calibration, valid_errors, out_dir / "calibration.png",
                         title=f"committee of {committee.size}, validation data")
    valid_metrics = evaluate(committee, data.valid, batch, None, compute_stress)
    test_metrics = None
    if data.test is not None:
        test_metrics = evaluate(committee, data.test, batch, None, compute_stress)
        test_errors = committee_errors(committee, data.test, batch)
        if calibration is not None and test_errors.forces_std:
            report["test"] = calibration_metrics(calibration, test_errors.forces_std,
                                                 test_errors.force_errors)
            calibration_plot(calibration, test_errors, out_dir / "calibration_test.png",
                             title=f"committee of {committee.size}, test data")
    committee.metadata = {
        "data_fingerprint": data.fingerprints,
        "test_metrics": test_metrics or {},
        "training": {"committee": config.committee.model_dump(),
                     "valid_metrics": valid_metrics, "calibration": report,
                     "example_structure": example_record(data.train)},
    }
    if config.data.dispersion is not None:  # trained on labels minus D3
        committee.metadata["dispersion"] = config.data.dispersion.to_metadata()
    model_path = save_committee(committee, out_dir / "model.mlff")
    (out_dir / "calibration.json").write_text(json.dumps(report, indent=2))
    (out_dir / "metrics.json").write_text(
        json.dumps({"valid": valid_metrics, "test": test_metrics}, indent=2)
    )
    valid = report.get("valid")
    if valid is not None:
        console.print(
            f"committee of {committee.size}: validation Spearman {valid['spearman']:.2f}, "
            f"predicted {valid['mean_predicted_meV_per_A']:.1f} vs observed "
            f"{valid['mean_observed_meV_per_A']:.1f} meV/Å"
        )
    return CommitteeResult(out_dir, model_path, member_paths, valid_metrics, test_metrics, report)

