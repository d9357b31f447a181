"""``mlff label STRUCTURES --oracle ORACLE.yaml --out DB``: reference labels into a store."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import ase
import ase.io
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlff.active.store import STATUS_FAILED, STATUS_OK, LabelStore, structure_key
from mlff.console import plain_console
from mlff.data.readers import check_file, structure_from_atoms
from mlff.errors import ConfigError, DataError
from mlff.oracles import ExecutorConfig, LabelResult, label_many, load_oracle, make_executor
from mlff.oracles.sanity import EnergyGuard

DESCRIPTION = """\
Label every frame of STRUCTURES (any file ASE reads) with the reference method in
ORACLE.yaml and store each label in DB, a label store (SQLite file, created if missing,
or an ASE database URL) the moment it is computed.

Frames whose structure is already in the store (labelled or failed) are skipped, so a
run that was killed continues where it stopped when run again. A calculation that fails
(no SCF convergence, an error in the code, NaN, the oracle's timeout) is stored as
failed with its reason, and so is a suspect label (a force above the oracle's max_force,
or an energy per atom far from what the store's earlier labels allow); --retry-failed
tries those again.

Runs on a local process pool of --workers processes (default: every core), or on a
running Dask cluster (--scheduler tcp://host:8786; see docs/oracles.md for SLURM).
Prints a summary: labelled, failed (with reasons) and skipped frames.
"""

_MAX_REASONS = 20


def add_parser(subparsers) -> None:
    """Register ``mlff label``."""
    parser = subparsers.add_parser(
        "label", help="compute reference labels (DFT, xTB, any ASE calculator) into a store",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("structures", metavar="STRUCTURES",
                        help="structures to label: any file ASE reads (extxyz, POSCAR, ...)")
    parser.add_argument("--oracle", metavar="ORACLE.yaml", type=Path, required=True,
                        help="oracle config (type: emt|tblite|pyscf|cp2k|gpaw|ase, ...)")
    parser.add_argument("--out", metavar="DB", required=True,
                        help="label store: SQLite file (labels.db) or ASE database URL")
    parser.add_argument("--workers", metavar="N", type=int, default=None,
                        help="local worker processes (default: the number of cores)")
    parser.add_argument("--scheduler", metavar="ADDR", default=None,
                        help="address of a running Dask scheduler, e.g. tcp://node1:8786")
    parser.add_argument("--index", metavar="SLICE", default=":",
                        help="frames of STRUCTURES, as ASE reads them: ':' all (default), "
                             "'0:10', '::2', '-1'")
    parser.add_argument("--iteration", metavar="I", type=int, default=0,
                        help="active-learning iteration recorded with each label (default: 0)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="label again the frames stored as failed")
    parser.set_defaults(func=run)


def read_frames(path: str | Path, index: str) -> list[tuple[int, ase.Atoms]]:
    """The selected frames of ``path`` as (frame number, structure without labels).

    Raises:
        DataError: the file is missing or unreadable, the selection is not an ASE index,
            or a frame has NaN positions or a degenerate cell.
    """
    from ase.io.formats import string2index

    path = check_file(path)
    try:
        selector = string2index(index)
    except ValueError:
        raise DataError(f"--index {index!r} is not a frame index or slice (':', '0:10', "
                        "'::2', '-1').") from None
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:  # ASE raises many kinds for unparsable input
        raise DataError(f"{path}: cannot read the structures ({type(exc).__name__}: {exc}). "
                        "Check the file with `ase gui` or convert it to extxyz.") from None
    numbers = list(range(len(frames)))
    if isinstance(selector, int):
        if not -len(frames) <= selector < len(frames):
            raise DataError(f"{path}: has no frame {selector} ({len(frames)} frames).")
        chosen = [numbers[selector]]
    else:
        chosen = numbers[selector]
    selected = []
    for number in chosen:
        atoms = frames[number].copy()  # without the calculator (old labels)
        bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                         pbc=atoms.pbc)
        structure_from_atoms(bare, source=f"{path}:{number}")  # positions and cell valid
        selected.append((number, atoms))
    if not selected:
        raise DataError(f"{path}: --index {index!r} selects no frames ({len(frames)} in the file).")
    return selected


def _executor_config(args: argparse.Namespace) -> ExecutorConfig:
    if args.scheduler is not None and args.workers is not None:
        raise ConfigError("--workers sets the size of the local pool; with --scheduler the "
                          "Dask cluster's workers are used. Give one of them.")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers}).")
    return ExecutorConfig(scheduler=args.scheduler, workers=args.workers)


def run(args: argparse.Namespace) -> int:
    """Label the frames not yet in the store, committing each result, then summarise."""
    oracle = load_oracle(args.oracle)
    executor_config = _executor_config(args)
    frames = read_frames(args.structures, args.index)
    store = LabelStore(args.out)
    stored = store.statuses()
    todo: list[tuple[int, ase.Atoms, str]] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for number, atoms in frames:
        key = structure_key(atoms)
        status = stored.get(key)
        if key in seen:
            skipped["duplicate in the file"] += 1
        elif status == STATUS_OK or (status == STATUS_FAILED and not args.retry_failed):
            skipped[f"already {'labelled' if status == STATUS_OK else 'failed'}"] += 1
        else:
            todo.append((number, atoms, key))
        seen.add(key)

    console = plain_console(stderr=True)
    guard = EnergyGuard(store.labelled(), oracle.config.max_energy_deviation) if todo else None
    failed: list[tuple[int, str]] = []
    done = 0
    if todo:
        with Progress(TextColumn(f"labelling with {oracle.name}", markup=False), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("label", total=len(todo))

            def commit(position: int, result: LabelResult) -> None:
                nonlocal done
                assert guard is not None
                result = guard.screen(result)  # a label far off the earlier ones is suspect
                number, atoms, key = todo[position]
                provenance = oracle.provenance(args.iteration, source=f"{args.structures}:{number}")
                if "config_type" in atoms.info:
                    provenance["config_type"] = atoms.info["config_type"]
                store.add(result, atoms, key, provenance)
                if result.ok:
                    done += 1
                else:
                    failed.append((number, result.reason or "unknown"))
                progress.advance(task)

            with make_executor(executor_config) as executor:
                label_many([atoms for _, atoms, _ in todo], oracle.config, executor,
                           on_result=commit)
    _print_summary(args, len(frames), done, failed, skipped, store)
    return 0


def _print_summary(args: argparse.Namespace, total: int, done: int,
                   failed: list[tuple[int, str]], skipped: Counter[str],
                   store: LabelStore) -> None:
    console = plain_console(soft_wrap=True)
    table = Table(title=f"mlff label {args.structures} -> {args.out}", show_header=False)
    table.add_row("frames selected", str(total))
    table.add_row("labelled now", str(done))
    table.add_row("failed now", str(len(failed)))
    for reason, count in sorted(skipped.items()):
        table.add_row(f"skipped ({reason})", str(count))
    table.add_row("store",
                  f"{store.count(STATUS_OK)} labelled, {store.count(STATUS_FAILED)} failed")
    console.print(table)
    for number, reason in sorted(failed)[:_MAX_REASONS]:
        console.print(f"failed: frame {number}: {reason}", highlight=False)
    if len(failed) > _MAX_REASONS:
        console.print(f"... and {len(failed) - _MAX_REASONS} more failures; list them with "
                      f"`ase db {args.out} status=failed reason`", highlight=False)
