"""The oracle configuration: which reference method labels structures, and its settings.

One flat, strict schema for every oracle type; a setting that does not belong to the
chosen ``type`` is an error that names it and lists the settings that do. Read from a
YAML file, a dict, or given as an :class:`OracleConfig`:

.. code-block:: yaml

    type: pyscf          # emt | tblite | pyscf | cp2k | gpaw | ase
    xc: PBE
    basis: def2-SVP
    timeout: 600         # seconds per structure; the calculation is killed after it

See ``docs/oracles.md`` for every type with examples.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlff.errors import ConfigError

_RYDBERG = 13.605693122994  # eV (ase.units.Rydberg)

OracleType = Literal["emt", "tblite", "pyscf", "cp2k", "gpaw", "ase"]
Property = Literal["energy", "forces", "stress"]

COMMON_FIELDS: frozenset[str] = frozenset({"type", "timeout", "properties", "max_force",
                                           "max_energy_deviation"})
# settings shared by the two periodic DFT codes
_PERIODIC_DFT = frozenset({"xc", "cutoff", "kpoint_density", "kpts", "smearing", "charge",
                           "spin", "max_scf", "ranks", "threads", "command", "directory"})
FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    "emt": frozenset(),
    "tblite": frozenset({"method", "accuracy", "electronic_temperature", "max_iterations",
                         "charge", "spin"}),
    "pyscf": frozenset({"xc", "basis", "charge", "spin", "conv_tol", "max_cycle"}),
    "cp2k": _PERIODIC_DFT | {"basis_set", "pseudo_potential", "rel_cutoff", "dispersion",
                             "eps_scf", "mixing_alpha"},
    "gpaw": _PERIODIC_DFT | {"mode", "basis_set", "eps_scf", "mixing_alpha"},
    "ase": frozenset({"calculator", "kwargs"}),
}
# defaults of settings whose default depends on the type (eV for cutoffs)
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cp2k": {"cutoff": 5442.3, "basis_set": "DZVP-MOLOPT-SR-GTH", "eps_scf": 1.0e-7},
    "gpaw": {"cutoff": 400.0, "basis_set": "dzp", "eps_scf": 1.0e-6},
}
# below this a CP2K cutoff was almost surely meant in Rydberg (400 Ry = 5442 eV)
_CP2K_MIN_CUTOFF_EV = 1000.0
_CALCULATOR_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class OracleConfig(BaseModel):
    """Settings of a reference labeller (strict types; unknown keys are errors).

    Attributes:
        type: ``emt`` (ASE's EMT, for tests and demos), ``tblite`` (GFN-xTB),
            ``pyscf`` (Kohn-Sham DFT for molecules), ``cp2k`` (GPW DFT, periodic or not),
            ``gpaw`` (PAW DFT, plane waves or LCAO) or ``ase`` (any ASE calculator).
        timeout: wall-clock limit per structure, s. When set, each calculation runs in
            its own child process, killed (with its process group) when the limit passes;
            the structure is then recorded as failed. ``None``: no limit, in-process.
        properties: what to compute: ``energy`` (always), ``forces``, ``stress``.
            Stress is only computed for structures periodic in all three directions.
        max_force: sanity guard, eV/Å: a label with a force component larger than this is
            recorded as a suspect failure instead of being stored (a DFT run that went
            wrong without saying so). ``None`` turns the guard off.
        max_energy_deviation: sanity guard, eV/atom: a label whose energy per atom is
            further than this from a per-element fit to the store's earlier labels (plus
            their own spread) is recorded as a suspect failure (``mlff label``, ``mlff
            learn``). ``None`` turns it off.
        method: tblite Hamiltonian: ``GFN2-xTB``, ``GFN1-xTB`` or ``IPEA1-xTB``.
        accuracy: tblite numerical accuracy (smaller is tighter).
        electronic_temperature: tblite Fermi smearing temperature, K.
        max_iterations: tblite SCC iterations before it gives up.
        charge: total charge, e (tblite, pyscf).
        spin: number of unpaired electrons, 2S (tblite, pyscf); 0 runs restricted
            Kohn-Sham (RKS) in PySCF, more runs unrestricted (UKS).
        xc: PySCF exchange-correlation functional (``PBE``, ``B3LYP``, ``HF``, ...).
        basis: PySCF basis set name (``def2-SVP``, ``sto-3g``, ``cc-pVDZ``, ...).
        conv_tol: PySCF SCF energy convergence threshold, Hartree.
        max_cycle: PySCF SCF iterations before it gives up.
        calculator: ``"module.path:ClassName"`` of an ASE calculator (type ``ase``).
        kwargs: keyword arguments of that calculator's constructor.
        cutoff: plane-wave cutoff, eV (CP2K: of the finest grid, default 5442.3 eV = 400
            Ry; GPAW PW: of the wave functions, default 400 eV; LCAO: unused).
        rel_cutoff: CP2K relative cutoff, eV (default 816.3 eV = 60 Ry).
        kpoint_density: Monkhorst-Pack k-points per Å⁻¹ along each reciprocal vector
            (ASE's definition; 3.0 gives 6x6x6 for the 2-atom silicon cell) for structures
            periodic in 3D; ``None`` or a non-periodic structure: the Γ point only.
        kpts: an explicit ``[n1, n2, n3]`` mesh instead of ``kpoint_density``.
        smearing: Fermi-Dirac width, eV (CP2K's electronic temperature is width / k_B).
        max_scf: SCF iterations before the run counts as not converged.
        eps_scf: SCF convergence (CP2K: EPS_SCF, Hartree; GPAW: density change per
            valence electron).
        mixing_alpha: Broyden (CP2K) or Pulay (GPAW) density-mixing fraction.
        basis_set: CP2K basis (``DZVP-MOLOPT-SR-GTH``) or GPAW LCAO basis (``dzp``).
        pseudo_potential: CP2K GTH pseudopotential (default ``GTH-<xc>``).
        dispersion: ``D3`` adds Grimme's D3 (zero damping) to CP2K's functional.
        mode: GPAW ``pw`` (plane waves, with stress) or ``lcao`` (no stress).
        ranks: MPI ranks per calculation (``mpirun -np ranks``).
        threads: OpenMP threads per rank.
        command: CP2K: the shell command (default ``cp2k_shell.psmp``, prefixed with
            ``mpirun -np ranks`` when ``ranks > 1``); GPAW: the MPI launcher for
            ``ranks > 1`` (default ``mpiexec``).
        directory: folder for the code's files (default: the system's temporary folder).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: OracleType
    timeout: float | None = Field(default=None, gt=0)
    properties: list[Property] = Field(default_factory=lambda: ["energy", "forces", "stress"])
    # tblite
    method: Literal["GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"] = "GFN2-xTB"
    accuracy: float = Field(default=1.0, gt=0)
    electronic_temperature: float = Field(default=300.0, ge=0)
    max_iterations: int = Field(default=250, ge=1)
    # tblite and pyscf
    charge: int = 0
    spin: int = Field(default=0, ge=0)
    # pyscf
    xc: str = "PBE"
    basis: str = "def2-SVP"
    conv_tol: float = Field(default=1e-9, gt=0)
    max_cycle: int = Field(default=50, ge=1)
    # ase
    calculator: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # sanity guard (every type)
    max_force: float | None = Field(default=50.0, gt=0)
    max_energy_deviation: float | None = Field(default=2.0, gt=0)
    # cp2k and gpaw (cutoff and basis_set defaults depend on the type: TYPE_DEFAULTS)
    cutoff: float | None = Field(default=None, gt=0)
    rel_cutoff: float = Field(default=816.3, gt=0)
    kpoint_density: float | None = Field(default=3.0, gt=0)
    kpts: list[int] | None = None
    smearing: float = Field(default=0.05, ge=0)
    max_scf: int = Field(default=300, ge=1)
    eps_scf: float | None = Field(default=None, gt=0)
    mixing_alpha: float = Field(default=0.2, gt=0, le=1)
    basis_set: str | None = None
    pseudo_potential: str | None = None
    dispersion: Literal["D3"] | None = None
    mode: Literal["pw", "lcao"] = "pw"
    ranks: int = Field(default=1, ge=1)
    threads: int = Field(default=1, ge=1)
    command: str | None = None
    directory: str | None = None

    @model_validator(mode="after")
    def _check_type_fields(self) -> OracleConfig:
        allowed = COMMON_FIELDS | FIELDS_BY_TYPE[self.type]
        foreign = sorted(set(self.model_fields_set) - allowed)
        if foreign:
            raise ValueError(
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not "
                f"{'a setting' if len(foreign) == 1 else 'settings'} of the '{self.type}' "
                f"oracle; its settings are: {', '.join(sorted(allowed))}"
            )
        for name, value in TYPE_DEFAULTS.get(self.type, {}).items():
            if getattr(self, name) is None:  # frozen: fill the type's default in place
                object.__setattr__(self, name, value)
        if self.kpts is not None and (len(self.kpts) != 3 or min(self.kpts) < 1):
            raise ValueError(f"kpts {self.kpts} must be three positive integers, e.g. [4, 4, 4]")
        if self.type == "cp2k" and self.cutoff < _CP2K_MIN_CUTOFF_EV:
            raise ValueError(
                f"cutoff {self.cutoff:g} is in eV, not Rydberg: a CP2K grid cutoff of "
                f"{self.cutoff:g} Ry is {self.cutoff * _RYDBERG:.1f} eV (400 Ry = 5442.3 eV)"
            )
        if self.type == "gpaw" and self.mode == "lcao" and "stress" in self.properties:
            if "properties" in self.model_fields_set:
                raise ValueError("GPAW's lcao mode computes no stress: use mode: pw, or "
                                 "properties: [energy, forces]")
            object.__setattr__(self, "properties", ["energy", "forces"])
        if "energy" not in self.properties:
            raise ValueError(f"properties {self.properties} must include 'energy'")
        if len(set(self.properties)) != len(self.properties):
            raise ValueError(f"properties {self.properties} lists a property twice")
        if self.type == "ase":
            if self.calculator is None:
                raise ValueError(
                    "the 'ase' oracle needs calculator: \"module.path:ClassName\", e.g. "
                    "ase.calculators.vasp:Vasp"
                )
            if not _CALCULATOR_PATH.match(self.calculator):
                raise ValueError(
                    f"calculator {self.calculator!r} is not \"module.path:ClassName\", e.g. "
                    "ase.calculators.espresso:Espresso"
                )
        return self

    @property
    def wanted(self) -> tuple[str, ...]:
        """``properties`` as a tuple, in the order energy, forces, stress."""
        return tuple(p for p in ("energy", "forces", "stress") if p in self.properties)

    @property
    def required_code(self) -> list:
        """The Python modules and programs this oracle type needs
        (:class:`mlff.oracles.requirements.Requirement`; declared in ``REQUIRED_CODE``)."""
        from mlff.oracles.requirements import required_code

        return required_code(self)


def _format_error(error: dict, source: str) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return (f"{source}: unknown key '{loc}'. Allowed keys: "
                f"{', '.join(sorted(OracleConfig.model_fields))}.")
    if error["type"] == "missing":
        return f"{source}: missing required key '{loc}'."
    if not loc:
        return f"{source}: {error['msg'].removeprefix('Value error, ')}."
    message = f"{source}: '{loc}': {error['msg']} (got {error.get('input')!r})."
    value = error.get("input")
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
        message += f" YAML reads {value} as text: write it with a dot, e.g. 1.0e-9."
    return message


def validate_oracle_config(raw: Any, source: str = "oracle config") -> OracleConfig:
    """Validate a mapping of settings.

    Raises:
        ConfigError: naming every bad key, with the allowed keys.
    """
    if isinstance(raw, OracleConfig):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of oracle settings (type: emt|tblite|"
                          f"pyscf|cp2k|gpaw|ase, ...), got {type(raw).__name__}.")
    try:
        return OracleConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(e, source) for e in exc.errors())) from None


def load_oracle_config(config: str | Path | dict[str, Any] | OracleConfig) -> OracleConfig:
    """An :class:`OracleConfig` from a YAML file path, a dict, or itself.

    Raises:
        ConfigError: the file is missing or not YAML, or a setting is invalid.
    """
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"{path}: no such oracle config file.")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8); give the oracle's YAML "
                              "config file.") from None
        return validate_oracle_config(raw, str(path))
    return validate_oracle_config(config)
