"""The oracle configuration: which reference method labels structures, and its settings.

One flat, strict schema for every oracle type; a setting that does not belong to the
chosen ``type`` is an error that names it and lists the settings that do. Read from a
YAML file, a dict, or given as an :class:`OracleConfig`:

.. code-block:: yaml

    type: pyscf          # emt | tblite | pyscf | ase
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

OracleType = Literal["emt", "tblite", "pyscf", "ase"]
Property = Literal["energy", "forces", "stress"]

COMMON_FIELDS: frozenset[str] = frozenset({"type", "timeout", "properties"})
FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    "emt": frozenset(),
    "tblite": frozenset({"method", "accuracy", "electronic_temperature", "max_iterations",
                         "charge", "spin"}),
    "pyscf": frozenset({"xc", "basis", "charge", "spin", "conv_tol", "max_cycle"}),
    "ase": frozenset({"calculator", "kwargs"}),
}
_CALCULATOR_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class OracleConfig(BaseModel):
    """Settings of a reference labeller (strict types; unknown keys are errors).

    Attributes:
        type: ``emt`` (ASE's EMT, for tests and demos), ``tblite`` (GFN-xTB),
            ``pyscf`` (Kohn-Sham DFT for molecules) or ``ase`` (any ASE calculator).
        timeout: wall-clock limit per structure, s. When set, each calculation runs in
            its own child process, killed (with its process group) when the limit passes;
            the structure is then recorded as failed. ``None``: no limit, in-process.
        properties: what to compute: ``energy`` (always), ``forces``, ``stress``.
            Stress is only computed for structures periodic in all three directions.
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
                          f"pyscf|ase, ...), got {type(raw).__name__}.")
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
        return validate_oracle_config(raw, str(path))
    return validate_oracle_config(config)
