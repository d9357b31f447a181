"""Grimme's D3 dispersion correction, computed by simple-dftd3 (the PyPI ``dftd3`` package).

A model can be trained on reference labels *minus* D3 (``data.dispersion`` in the training
config): the network then learns only the short-range part, and the D3 energy, forces and
stress are added back wherever the model runs (ASE calculator, LAMMPS through its own
``pair_style dispersion/d3``). The settings travel in the model file's metadata as the
dict of :meth:`D3Settings.to_metadata`, with the damping parameters written out, so a
model evaluates the same D3 whatever version of the parameter database is installed.

Units: the ASE ones at the interface (eV, Å, eV/Å, eV/Å³ with ASE's stress sign);
simple-dftd3 works in Hartree and Bohr inside. Damping parameters keep simple-dftd3's
convention: ``a2`` (BJ) in Bohr, ``bet`` (modified zero damping) in 1/Bohr, the rest
dimensionless. Cutoffs are stored in Å.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr, Hartree
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlff.errors import ConfigError, DataError, MLFFError, ModelFileError

# method -> (key of simple-dftd3's parameter database, the damping parameters it needs)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "d3bj": ("bj", ("s6", "s8", "a1", "a2")),
    "d3zero": ("zero", ("s6", "s8", "rs6", "rs8")),
    "d3bjm": ("bjm", ("s6", "s8", "a1", "a2")),
    "d3zerom": ("zerom", ("s6", "s8", "rs6", "rs8", "bet")),
}
# simple-dftd3's default real-space cutoffs (Bohr): pairs, triples, coordination numbers
DEFAULT_CUTOFF = 60.0 * Bohr
DEFAULT_THREE_BODY_CUTOFF = 40.0 * Bohr
DEFAULT_CN_CUTOFF = 40.0 * Bohr
# D3 has reference C6 coefficients for H to Pu
MAX_ATOMIC_NUMBER = 94
INSTALL_HINT = "pip install dftd3 (or mlff's extra: pip install 'mlff[d3]')"


class D3Settings(BaseModel):
    """The ``data.dispersion`` section of a training config, and what a model file stores.

    Attributes:
        method: ``d3bj`` (rational/Becke-Johnson damping), ``d3zero`` (zero damping),
            ``d3bjm`` / ``d3zerom`` (their modified forms).
        functional: the functional of the reference data, as simple-dftd3 names it
            (``pbe``, ``b3lyp``, ``r2scan``, ...); picks the damping parameters.
        parameters: damping parameters that replace or complete the functional's
            (``s6 s8 a1 a2`` for BJ, ``s6 s8 rs6 rs8`` for zero damping, plus ``bet`` for
            ``d3zerom``); with every one given, ``functional`` may be left out.
        three_body: add the Axilrod-Teller-Muto three-body term (``s9 = 1``).
        cutoff, three_body_cutoff, cn_cutoff: real-space cutoffs of the pair sum, the
            triple sum and the coordination numbers, Å (simple-dftd3's defaults).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: str = Field(description="d3bj, d3zero, d3bjm or d3zerom")
    functional: str | None = Field(
        None, description="functional of the reference data (simple-dftd3's name, e.g. pbe)"
    )
    parameters: dict[str, float] = Field(
        default_factory=dict, description="damping parameters replacing the functional's"
    )
    three_body: bool = Field(False, description="add the Axilrod-Teller-Muto three-body term")
    cutoff: float = Field(DEFAULT_CUTOFF, gt=0, description="pair cutoff, Å")
    three_body_cutoff: float = Field(DEFAULT_THREE_BODY_CUTOFF, gt=0, description="triples, Å")
    cn_cutoff: float = Field(DEFAULT_CN_CUTOFF, gt=0, description="coordination numbers, Å")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        value = value.lower()
        if value not in METHODS:
            raise ValueError(
                f"unknown D3 method {value!r}; choose one of {', '.join(METHODS)} "
                "(d3bj: Becke-Johnson damping, d3zero: zero damping)"
            )
        return value

    @field_validator("functional")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    def resolved(self) -> D3Settings:
        """These settings with every damping parameter written out (``s9`` and ``alp`` too).

        Raises:
            ConfigError: unknown functional for the method, unknown or missing parameters.
            MLFFError: simple-dftd3 (the ``dftd3`` package) is not installed.
        """
        key, needed = METHODS[self.method]
        values: dict[str, float] = {}
        if self.functional is not None:
            database = parameter_database()
            entry = database["parameter"].get(self.functional, {}).get("d3", {})
            if key not in entry:
                known = sorted(name for name, item in database["parameter"].items()
                               if key in item.get("d3", {}))
                close = difflib.get_close_matches(self.functional, known, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"data.dispersion: simple-dftd3 has no {self.method} parameters for the "
                    f"functional {self.functional!r}.{hint} Functionals with {self.method} "
                    f"parameters: {' '.join(known)}; or give every damping parameter "
                    f"({' '.join(needed)}) under data.dispersion.parameters."
                )
            base = database["default"]["parameter"]["d3"][key]
            values = {k: float(v) for k, v in {**base, **entry[key]}.items()
                      if isinstance(v, (int, float))}
        allowed = set(needed) | {"s9", "alp"}
        unknown = sorted(set(self.parameters) - allowed)
        if unknown:
            raise ConfigError(
                f"data.dispersion.parameters: {', '.join(unknown)} is not a {self.method} "
                f"damping parameter; the parameters are {', '.join(sorted(allowed))}."
            )
        values.update({k: float(v) for k, v in self.parameters.items()})
        values.setdefault("s6", 1.0)
        values.setdefault("alp", 14.0)
        if key.startswith("zero"):
            values.setdefault("rs8", 1.0)
        values["s9"] = values.get("s9", 1.0) if self.three_body else 0.0
        missing = [name for name in needed if name not in values]
        if missing:
            raise ConfigError(
                f"data.dispersion: {self.method} needs the damping parameters "
                f"{' '.join(needed)}; {' '.join(missing)} missing. Name the functional "
                f"(data.dispersion.functional) or give them under data.dispersion.parameters."
            )
        return self.model_copy(update={"parameters": dict(sorted(values.items()))})

    def to_metadata(self) -> dict[str, Any]:
        """The resolved settings as plain JSON data, for a model file."""
        resolved = self.resolved()
        return {**resolved.model_dump(), "implementation": f"simple-dftd3 {_version()}",
                "units": "cutoffs in Å; damping parameters as simple-dftd3 (a2 in Bohr)"}

    @classmethod
    def from_metadata(cls, data: dict[str, Any], where: str = "model file") -> D3Settings:
        """Settings stored by :meth:`to_metadata`.

        Raises:
            ModelFileError: the entry is not valid D3 settings.
        """
        fields = {k: v for k, v in data.items() if k not in ("implementation", "units")}
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: the 'dispersion' entry is not valid ({exc}).") from None

    def describe(self) -> str:
        """One line for people: method, functional, parameters, three-body, cutoffs."""
        name = self.functional or "custom parameters"
        params = " ".join(f"{k}={v:g}" for k, v in self.parameters.items())
        three = "with" if self.three_body else "without"
        return (f"{self.method} ({name}; {params}), {three} three-body term; cutoffs "
                f"{self.cutoff:.2f} Å (pairs), {self.cn_cutoff:.2f} Å (coordination numbers)")


def dispersion_settings(metadata: dict[str, Any] | None, where: str = "model file") -> D3Settings | None:
    """The D3 settings a model file's metadata holds, or ``None`` for a model without D3."""
    entry = (metadata or {}).get("dispersion")
    return None if entry is None else D3Settings.from_metadata(entry, where)


def _dftd3():
    try:
        from dftd3 import interface
    except ImportError:
        raise MLFFError(
            f"D3 dispersion needs simple-dftd3, which is not installed here: {INSTALL_HINT}."
        ) from None
    return interface


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("dftd3")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@functools.lru_cache(maxsize=1)
def parameter_database() -> dict[str, Any]:
    """simple-dftd3's damping-parameter database (``parameters.toml`` of the package; read
    once, do not modify)."""
    _dftd3()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    text = (importlib.resources.files("dftd3") / "parameters.toml").read_text()
    return tomllib.loads(text)


def check_elements(numbers: np.ndarray, where: str) -> None:
    """Raise unless every atomic number has D3 reference data (H to Pu).

    Raises:
        DataError: naming ``where``, the element and the first atom of it.
    """
    numbers = np.asarray(numbers)
    bad = np.flatnonzero((numbers < 1) | (numbers > MAX_ATOMIC_NUMBER))
    if len(bad):
        z = int(numbers[bad[0]])
        name = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
        raise DataError(
            f"{where}: atom {int(bad[0])} is {name}, which has no D3 parameters (D3 covers "
            f"H to Pu, Z 1-{MAX_ATOMIC_NUMBER}); remove data.dispersion or these structures."
        )


@dataclass
class D3Result:
    """D3 of one structure (ASE units and signs).

    Attributes:
        energy: eV.
        forces: (N, 3) eV/Å.
        stress: (3, 3) eV/Å³ (positive under tension), or ``None`` unless periodic in 3D.
        energies: (N,) eV per atom (each pair's energy split evenly), when asked for.
    """

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    energies: np.ndarray | None = None


class D3:
    """Evaluates D3 with fixed settings; reuses simple-dftd3's structure between calls
    while the atoms and periodicity stay the same (MD).

    Args:
        settings: the D3 settings (resolved here if they are not yet).

    Raises:
        ConfigError, MLFFError: as :meth:`D3Settings.resolved`.
    """

    def __init__(self, settings: D3Settings) -> None:
        self.settings = settings.resolved()
        interface = _dftd3()
        classes = {"d3bj": interface.RationalDampingParam,
                   "d3zero": interface.ZeroDampingParam,
                   "d3bjm": interface.ModifiedRationalDampingParam,
                   "d3zerom": interface.ModifiedZeroDampingParam}
        try:
            self._param = classes[self.settings.method](**self.settings.parameters)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"data.dispersion: simple-dftd3 refuses the damping parameters "
                              f"{self.settings.parameters} ({exc}).") from None
        self._model = None
        self._key: tuple | None = None

    def _structure(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray,
                   pbc: np.ndarray):
        key = (numbers.tobytes(), pbc.tobytes())
        positions = positions / Bohr
        lattice = cell / Bohr
        if self._model is not None and key == self._key:
            try:
                self._model.update(positions, lattice)
                return self._model
            except RuntimeError:
                pass  # rebuilt below
        interface = _dftd3()
        model = interface.DispersionModel(numbers, positions, lattice, pbc)
        s = self.settings
        model.set_realspace_cutoff(s.cutoff / Bohr, s.three_body_cutoff / Bohr, s.cn_cutoff / Bohr)
        self._model, self._key = model, key
        return model

    def compute(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None,
                pbc: np.ndarray, where: str = "structure", energies: bool = False) -> D3Result:
        """D3 energy, forces and (3D-periodic) stress of one structure.

        Args:
            numbers: (N,) atomic numbers.
            positions: (N, 3) Å.
            cell: (3, 3) lattice vectors as rows, Å (zeros or ``None`` for a molecule).
            pbc: (3,) periodicity.
            where: names the structure in errors (file and frame).
            energies: also the per-atom energies (an N×N pairwise evaluation).

        Raises:
            DataError: an element without D3 parameters, or a geometry simple-dftd3
                cannot evaluate (atoms on top of each other).
        """
        numbers = np.ascontiguousarray(numbers, dtype=np.int32)
        check_elements(numbers, where)
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.zeros((3, 3)) if cell is None else np.ascontiguousarray(cell, dtype=np.float64)
        pbc = np.ascontiguousarray(np.broadcast_to(pbc, (3,)), dtype=bool)
        try:
            model = self._structure(numbers, positions, cell, pbc)
            result = model.get_dispersion(self._param, grad=True)
            pairs = model.get_pairwise_dispersion(self._param) if energies else None
        except RuntimeError as exc:
            self._model = None
            raise DataError(f"{where}: simple-dftd3 cannot evaluate D3 for this structure "
                            f"({exc}); check for overlapping atoms or a degenerate cell.") from None
        stress = None
        if pbc.all():
            stress = np.asarray(result["virial"]) * Hartree / abs(np.linalg.det(cell))
        per_atom = None
        if pairs is not None:
            per_atom = (pairs["additive pairwise energy"].sum(axis=1)
                        + pairs["non-additive pairwise energy"].sum(axis=1)) * Hartree
        return D3Result(
            energy=float(result["energy"]) * Hartree,
            forces=-np.asarray(result["gradient"]) * (Hartree / Bohr),
            stress=stress,
            energies=per_atom,
        )
