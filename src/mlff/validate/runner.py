"""Run a selection of validation checks and write the report.

Checks, their inputs, and the module that computes them:

===========  ===============================================  =============================
``errors``   labelled test sets                                :mod:`.checks.errors`
``transfer`` test sets from other conditions (+ the above)     :mod:`.checks.transfer`
``md``       a structure                                       :mod:`.checks.md_stability`
``rdf``      a structure (+ reference or reference frames)     :mod:`.checks.rdf`
``crystal``  a bulk crystal (+ reference)                      :mod:`.checks.crystal`
``phonons``  a bulk crystal (+ reference)                      :mod:`.checks.phonons`
``molecule`` a molecule (+ reference)                          :mod:`.checks.molecule`
``cost``     a structure + reference                           :mod:`.checks.cost`
===========  ===============================================  =============================

Every check takes the model as an ASE calculator and the reference as a plain ASE
calculator (never an oracle config), so the library works with any calculator.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.errors import ConfigError
from mlff.validate.checks import cost, crystal, errors, md_stability, molecule, phonons, rdf
from mlff.validate.checks import transfer
from mlff.validate.labelled import EvaluationCache, LabelledSet
from mlff.validate.report import FIGURES, write_report
from mlff.validate.result import CheckResult

CHECKS: tuple[str, ...] = ("errors", "transfer", "md", "rdf", "crystal", "phonons", "molecule",
                           "cost")
TITLES = {"errors": errors.TITLE, "transfer": transfer.TITLE, "md": md_stability.TITLE,
          "rdf": rdf.TITLE, "crystal": crystal.TITLE, "phonons": phonons.TITLE,
          "molecule": molecule.TITLE, "cost": cost.TITLE}


@dataclass
class ValidationInputs:
    """What the checks run on.

    Attributes:
        test_sets: labelled in-distribution test sets (errors; transfer's baseline).
        transfer_sets: labelled sets from other conditions (transfer).
        structure: the structure of the MD, RDF and cost checks.
        crystal: a bulk cell (crystal and phonon checks).
        molecule: a molecule (molecule check).
        reference_frames: a reference trajectory of ``structure`` (RDF check).
    """

    test_sets: list[LabelledSet] = field(default_factory=list)
    transfer_sets: list[LabelledSet] = field(default_factory=list)
    structure: Atoms | None = None
    crystal: Atoms | None = None
    molecule: Atoms | None = None
    reference_frames: list[Atoms] | None = None


@dataclass
class ValidationOptions:
    """The settings of every check (see each check's options class)."""

    errors: errors.ErrorsOptions = field(default_factory=errors.ErrorsOptions)
    transfer: transfer.TransferOptions = field(default_factory=transfer.TransferOptions)
    md: md_stability.MDOptions = field(default_factory=md_stability.MDOptions)
    rdf: rdf.RDFOptions = field(default_factory=rdf.RDFOptions)
    crystal: crystal.CrystalOptions = field(default_factory=crystal.CrystalOptions)
    phonons: phonons.PhononOptions = field(default_factory=phonons.PhononOptions)
    molecule: molecule.MoleculeOptions = field(default_factory=molecule.MoleculeOptions)
    cost: cost.CostOptions = field(default_factory=cost.CostOptions)


@dataclass
class ValidationReport:
    """What :func:`run_validation` produced."""

    results: list[CheckResult]
    not_run: dict[str, str]
    markdown: Path
    json: Path

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that raised."""
        return [r.name for r in self.results if r.status != "ok"]


def missing_input(check: str, inputs: ValidationInputs, reference: BaseCalculator | None
                  ) -> str | None:
    """Why ``check`` cannot run with these inputs (the option to give), or None."""
    needs = {
        "errors": (bool(inputs.test_sets), "no labelled test data (--data)"),
        "transfer": (bool(inputs.transfer_sets), "no test sets from other conditions "
                                                  "(--transfer)"),
        "md": (inputs.structure is not None, "no structure (--structure, or --data)"),
        "rdf": (inputs.structure is not None, "no structure (--structure, or --data)"),
        "crystal": (inputs.crystal is not None, "no bulk crystal (--crystal)"),
        "phonons": (inputs.crystal is not None, "no bulk crystal (--crystal)"),
        "molecule": (inputs.molecule is not None, "no molecule (--molecule)"),
        "cost": (inputs.structure is not None and reference is not None,
                 "no reference calculator (--reference)" if reference is None
                 else "no structure (--structure, or --data)"),
    }
    ok, reason = needs[check]
    return None if ok else reason


def select_checks(requested: Sequence[str] | None, inputs: ValidationInputs,
                  reference: BaseCalculator | None) -> tuple[list[str], dict[str, str]]:
    """The checks to run, in report order, and why the others are not run.

    Args:
        requested: check names, or None for every check whose inputs are present.

    Raises:
        ConfigError: an unknown check name, or a requested check without its inputs.
    """
    if requested is None:
        reasons = {c: missing_input(c, inputs, reference) for c in CHECKS}
        return [c for c in CHECKS if reasons[c] is None], {c: r for c, r in reasons.items() if r}
    unknown = [c for c in requested if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(CHECKS)}.")
    for check in requested:
        reason = missing_input(check, inputs, reference)
        if reason:
            raise ConfigError(f"the {check} check cannot run: {reason}.")
    return [c for c in CHECKS if c in requested], {}


def run_validation(
    model: BaseCalculator,
    out_dir: str | Path,
    inputs: ValidationInputs,
    reference: BaseCalculator | None = None,
    checks: Sequence[str] | None = None,
    options: ValidationOptions | None = None,
    model_name: str = "model",
    reference_name: str | None = None,
    keep_going: bool = True,
    input_notes: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Run the checks and write ``out_dir/report.md``, ``report.json`` and ``figures/``.

    Args:
        model: the model's ASE calculator (:class:`~mlff.calculators.MLFFCalculator`).
        out_dir: the output folder (created).
        inputs: the data, structures and trajectories the checks run on.
        reference: the reference ASE calculator, or None.
        checks: names from :data:`CHECKS`; None runs every check whose inputs are given.
        options: the settings of every check.
        model_name: the model's description in the report.
        reference_name: the reference's description in the report.
        keep_going: record a check that raises as failed and run the others (else raise).
        input_notes: where the inputs came from (e.g. a default crystal), for the report.
        log: called with a line of progress for each check.

    Returns:
        The results and the report's paths.

    Raises:
        ConfigError: unknown checks, missing inputs of a requested check, or an invalid
            option.
    """
    options = options or ValidationOptions()
    selected, not_run = select_checks(checks, inputs, reference)
    _check_options(selected, options, inputs)
    out_dir = Path(out_dir)
    figures = out_dir / FIGURES
    cache = EvaluationCache(model)
    test = errors.join_sets(inputs.test_sets) if inputs.test_sets else None
    reference_label = reference_name or ("reference" if reference is not None else None)
    run_one: dict[str, Callable[[], CheckResult]] = {
        "errors": lambda: errors.run(model, test, figures, options.errors, cache),
        "transfer": lambda: transfer.run(model, test, inputs.transfer_sets, figures,
                                         options.transfer, cache),
        "md": lambda: md_stability.run(model, inputs.structure, figures, options.md),
        "rdf": lambda: rdf.run(model, inputs.structure, figures, reference,
                               inputs.reference_frames, options.rdf),
        "crystal": lambda: crystal.run(model, inputs.crystal, figures, reference, options.crystal),
        "phonons": lambda: phonons.run(model, inputs.crystal, figures, reference, options.phonons),
        "molecule": lambda: molecule.run(model, inputs.molecule, figures, reference,
                                         options.molecule),
        "cost": lambda: cost.run(model, inputs.structure, figures, reference, options.cost,
                                 reference_label or "reference"),
    }
    results = []
    for name in selected:
        if log:
            log(f"running the {name} check ...")
        start = time.perf_counter()
        try:
            result = run_one[name]()
        except Exception as exc:  # a failing check must not lose the others' results
            if not keep_going:
                raise
            result = CheckResult(name, TITLES[name], status="failed",
                                 error=f"{type(exc).__name__}: {exc}",
                                 summary={"traceback": traceback.format_exc()})
        result.seconds = time.perf_counter() - start
        results.append(result)
        if log:
            verdict = {True: "targets met", False: "targets missed", None: "done"}[result.passed]
            if result.status != "ok":
                verdict = f"FAILED: {result.error}"
            log(f"  {name}: {verdict} ({result.seconds:.1f} s)")
    settings = {"checks": selected, "options": _options_json(options)}
    md_path, json_path = write_report(out_dir, results, model_name, reference_label, settings,
                                      not_run, input_notes)
    return ValidationReport(results, not_run, md_path, json_path)


def _check_options(selected: Sequence[str], options: ValidationOptions,
                   inputs: ValidationInputs) -> None:
    """Validate the options of the selected checks before anything runs."""
    if "md" in selected:
        options.md.check()
    if "rdf" in selected:
        options.rdf.check()
    if "phonons" in selected:
        options.phonons.check()
    if "crystal" in selected:
        options.crystal.check()
    if "molecule" in selected:
        options.molecule.check(inputs.molecule)
    if "cost" in selected:
        options.cost.check()


def _options_json(options: ValidationOptions) -> dict[str, Any]:
    return asdict(options)
