"""Build the inputs and options of a validation run from command-line style strings:
``FILE@FRAME`` structures, ``NAME=FILE`` test sets, ``Cu`` / ``Cu:fcc:3.6`` crystals and
``check.option=value`` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import yaml
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, chemical_symbols, reference_states

from mlff.data.readers import LabelKeys
from mlff.errors import ConfigError, DataError
from mlff.md.io import read_start_structure
from mlff.validate.labelled import LabelledSet
from mlff.validate.runner import ValidationInputs, ValidationOptions

BULK_STRUCTURES = ("fcc", "bcc", "hcp", "diamond", "sc")
MD_MIN_ATOMS = 100  # a crystal used as the MD structure is repeated to at least this size


def split_frame(spec: str) -> tuple[str, int]:
    """``"file.xyz@3"`` -> ``("file.xyz", 3)``; without ``@N`` the frame is 0."""
    path, sep, frame = str(spec).rpartition("@")
    if sep and frame.lstrip("-").isdigit() and not Path(spec).exists():
        return path, int(frame)
    return str(spec), 0


def read_structure(spec: str) -> Atoms:
    """One frame of a structure file, ``FILE`` (first frame) or ``FILE@FRAME``.

    Raises:
        DataError: the file is missing or unreadable, or has no such frame.
    """
    path, frame = split_frame(spec)
    return read_start_structure(path, frame)


def read_frames(path: str | Path) -> list[Atoms]:
    """Every frame of a trajectory file (positions, cell and pbc).

    Raises:
        DataError: the file is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the reference trajectory's path.")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:  # ASE raises many kinds for unparsable input
        raise DataError(f"{path}: cannot read the trajectory ({type(exc).__name__}: {exc}).") \
            from None
    if not frames:
        raise DataError(f"{path}: the trajectory has no frames.")
    return [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in frames]


def labelled_set(spec: str, keys: LabelKeys = LabelKeys()) -> LabelledSet:
    """A test set from ``FILE`` (named after its stem) or ``NAME=FILE``."""
    name, sep, path = str(spec).partition("=")
    if not sep or Path(spec).exists():
        name, path = None, spec
    return LabelledSet.from_file(path, name, keys)


def crystal_from_spec(spec: str) -> Atoms:
    """A bulk cell from a structure file (``FILE`` or ``FILE@FRAME``) or from ASE's
    reference data: ``Cu``, ``Cu:fcc``, ``Cu:fcc:3.61`` (lattice constant Å), ``Mg:hcp:3.2``.

    Raises:
        ConfigError: an element or lattice ASE does not know.
        DataError: an unreadable file.
    """
    parts = str(spec).split(":")
    if parts[0] in atomic_numbers and not Path(spec).exists():
        symbol = parts[0]
        structure = parts[1] if len(parts) > 1 and parts[1] else None
        try:
            a = float(parts[2]) if len(parts) > 2 else None
        except ValueError:
            raise ConfigError(f"--crystal {spec}: the lattice constant {parts[2]!r} is not a "
                              "number (Å).") from None
        try:
            return bulk(symbol, structure, a=a)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"--crystal {spec}: ASE cannot build this crystal ({exc}); give "
                              "the lattice, e.g. Cu:fcc:3.61, or a structure file.") from None
    atoms = read_structure(spec)
    if not atoms.pbc.all():
        raise ConfigError(f"--crystal {spec}: the structure is not periodic in 3D; give a bulk "
                          "cell.")
    return atoms


def default_crystal(species: Sequence[int]) -> Atoms | None:
    """ASE's reference bulk crystal of a single-element model, when ASE knows a simple one."""
    if len(species) != 1:
        return None
    state = reference_states[species[0]] or {}
    if state.get("symmetry") not in BULK_STRUCTURES:
        return None
    return bulk(chemical_symbols[species[0]])


def build_inputs(
    data: Sequence[str] = (),
    transfer: Sequence[str] = (),
    structure: str | None = None,
    supercell: Sequence[int] | None = None,
    crystal: str | None = None,
    molecule: str | None = None,
    reference_trajectory: str | None = None,
    species: Sequence[int] = (),
    keys: LabelKeys = LabelKeys(),
) -> tuple[ValidationInputs, list[str]]:
    """The inputs of a validation run, with defaults filled in, and notes saying where
    each default came from.

    Defaults: the MD/RDF/cost structure is ``structure``, else the first frame of the
    first data file, else the crystal repeated to at least 100 atoms, else the molecule;
    the crystal of a single-element model defaults to ASE's reference crystal of that
    element; the molecule defaults to the first data frame when it is not periodic.
    ``supercell`` repeats the MD structure.
    """
    notes = []
    inputs = ValidationInputs(
        test_sets=[labelled_set(s, keys) for s in data],
        transfer_sets=[labelled_set(s, keys) for s in transfer],
    )
    first = inputs.test_sets[0].structures[0].atoms if inputs.test_sets else None
    if crystal is not None:
        inputs.crystal = crystal_from_spec(crystal)
    elif (auto := default_crystal(species)) is not None:
        inputs.crystal = auto
        notes.append(f"crystal: ASE's reference {auto.get_chemical_formula()} "
                     f"{reference_states[species[0]]['symmetry']} cell (give --crystal to "
                     "change it)")
    if molecule is not None:
        inputs.molecule = read_structure(molecule)
    elif first is not None and not first.pbc.any():
        inputs.molecule = _bare(first)
        notes.append(f"molecule: the first frame of {data[0]}")
    if structure is not None:
        inputs.structure = read_structure(structure)
    elif first is not None:
        inputs.structure = _bare(first)
        notes.append(f"MD structure: the first frame of {data[0]}")
    elif inputs.crystal is not None:
        inputs.structure = inputs.crystal.repeat(_repeat(inputs.crystal))
        notes.append(f"MD structure: the crystal repeated to {len(inputs.structure)} atoms")
    elif inputs.molecule is not None:
        inputs.structure = inputs.molecule.copy()
        notes.append("MD structure: the molecule")
    if supercell is not None and inputs.structure is not None:
        if len(supercell) != 3 or any(int(n) < 1 for n in supercell):
            raise ConfigError(f"--supercell {supercell}: give three whole numbers >= 1.")
        inputs.structure = inputs.structure.repeat(tuple(int(n) for n in supercell))
    if reference_trajectory is not None:
        inputs.reference_frames = read_frames(reference_trajectory)
    return inputs, notes


def _bare(atoms: Atoms) -> Atoms:
    return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)


def _repeat(atoms: Atoms) -> tuple[int, int, int]:
    from mlff.validate.geometry import isotropic_repeat

    return isotropic_repeat(atoms, MD_MIN_ATOMS)


def apply_overrides(options: ValidationOptions, overrides: Sequence[str]) -> None:
    """Set ``check.option=value`` entries on ``options`` (values parsed as YAML).

    Raises:
        ConfigError: an unknown check or option, or a value of the wrong kind; the
            message lists the allowed names.
    """
    checks = {f.name for f in dataclasses.fields(options)}
    for override in overrides:
        key, sep, text = override.partition("=")
        check, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {override!r}: write CHECK.OPTION=VALUE, e.g. "
                              "md.time_ps=10.")
        if check not in checks:
            raise ConfigError(f"--set {override!r}: unknown check {check!r}; choose from "
                              f"{', '.join(sorted(checks))}.")
        group = getattr(options, check)
        allowed = {f.name: f for f in dataclasses.fields(group)}
        if name not in allowed:
            raise ConfigError(f"--set {override!r}: {check} has no option {name!r}; its options "
                              f"are {', '.join(allowed)}.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {override!r}: cannot parse the value {text!r}.") from None
        setattr(group, name, _coerce(value, getattr(group, name), override))


def _coerce(value: Any, current: Any, override: str) -> Any:
    """``value`` in the kind of the option's current value (int -> float, list -> tuple)."""
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) != isinstance(value, bool) and current is not None:
            raise ConfigError(f"--set {override!r}: give true or false.")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        raise ConfigError(f"--set {override!r}: give a number.")
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value
