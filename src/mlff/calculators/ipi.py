"""i-PI: path-integral (and other) MD driven by i-PI, forces from an mlff model.

i-PI (the server) propagates the nuclei (ring-polymer beads, thermostats, barostats) and
asks a client for energy, forces and virial of each bead over a socket. The client here
is ASE's :class:`~ase.calculators.socketio.SocketClient` with the
:class:`~mlff.calculators.ase.MLFFCalculator` (units are converted by ASE)::

    mlff ipi model.mlff start.xyz --write-input run/   # run/init.xyz, run/input.xml
    cd run && i-pi input.xml &                         # the server (8 beads, 300 K)
    mlff ipi model.mlff init.xyz --unix mlff           # one or more clients

The client serves until i-PI ends the simulation. Several clients (in separate processes)
may serve one server, each computing whole beads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from mlff.errors import ConfigError


def run_client(
    model: Any,
    structure: Atoms,
    unix: str | None = "mlff",
    host: str = "localhost",
    port: int | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    timeout: float | None = 60.0,
) -> int:
    """Serve forces to an i-PI server until it stops; returns the number of calculations.

    Args:
        model: a ``.mlff`` file, a Potential or a committee.
        structure: the system, with the atom order of i-PI's initial structure; its
            ``pbc`` decides whether the model sees periodic images (i-PI sends the cell).
        unix: name of i-PI's UNIX socket (``<address>`` of a ``mode='unix'`` ffsocket);
            None to use TCP/IP.
        host, port: i-PI's address for ``mode='inet'``.
        device, dtype: where and in which precision the model runs.
        timeout: seconds to wait for the server's messages.
    """
    from ase.calculators.socketio import SocketClient

    from mlff.calculators.ase import MLFFCalculator

    if unix is None and port is None:
        raise ConfigError("give the i-PI server's UNIX socket name or a TCP port.")
    atoms = structure.copy()
    calc = MLFFCalculator(model, device=device, dtype=dtype)
    atoms.calc = calc
    client = (SocketClient(unixsocket=unix, timeout=timeout) if unix is not None
              else SocketClient(host=host, port=port, timeout=timeout))
    calls = 0
    try:
        for _ in client.irun(atoms, use_stress=bool(atoms.pbc.all())):
            calls += 1
    finally:
        client.close()
    return calls


def ipi_input(
    structure_file: str,
    address: str = "mlff",
    beads: int = 8,
    temperature: float = 300.0,
    steps: int = 1000,
    timestep: float = 0.5,
    periodic: bool = True,
    seed: int = 31415,
    prefix: str = "simulation",
) -> str:
    """An i-PI input (XML) for path-integral NVT MD with the PILE-L thermostat.

    Args:
        structure_file: the initial structure, read by i-PI through ASE (extxyz with a
            cell; the atom order must be the client's).
        address: the UNIX socket name the client connects to.
        beads: ring-polymer beads (1: classical MD).
        temperature: K.
        steps: MD steps.
        timestep: fs.
        periodic: whether i-PI applies periodic boundaries (the ffsocket's ``pbc``).
        seed: i-PI's random seed.
        prefix: prefix of i-PI's output files.
    """
    return f"""<simulation verbosity='low' safe_stride='100'>
  <output prefix='{prefix}'>
    <properties stride='1' filename='out'> [ step, time{{picosecond}}, conserved{{electronvolt}},
      temperature{{kelvin}}, kinetic_cv{{electronvolt}}, potential{{electronvolt}} ] </properties>
    <trajectory filename='pos' stride='10' format='xyz' cell_units='angstrom'> positions{{angstrom}} </trajectory>
  </output>
  <total_steps> {steps} </total_steps>
  <prng> <seed> {seed} </seed> </prng>
  <ffsocket name='mlff' mode='unix' pbc='{str(periodic).lower()}'>
    <address> {address} </address>
  </ffsocket>
  <system>
    <initialize nbeads='{beads}'>
      <file mode='ase'> {structure_file} </file>
      <velocities mode='thermal' units='kelvin'> {temperature} </velocities>
    </initialize>
    <forces> <force forcefield='mlff'/> </forces>
    <motion mode='dynamics'>
      <dynamics mode='nvt'>
        <timestep units='femtosecond'> {timestep} </timestep>
        <thermostat mode='pile_l'> <tau units='femtosecond'> 100 </tau> </thermostat>
      </dynamics>
    </motion>
    <ensemble> <temperature units='kelvin'> {temperature} </temperature> </ensemble>
  </system>
</simulation>
"""


def write_ipi_input(
    structure: Atoms, out_dir: str | Path, address: str = "mlff", **kwargs: Any
) -> Path:
    """Write ``init.xyz`` and ``input.xml`` (see :func:`ipi_input`) into ``out_dir``.

    A structure periodic in no direction gets a box with 10 Å of vacuum (i-PI needs a
    cell) and ``pbc='false'``.

    Returns:
        The path of ``input.xml``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atoms = structure.copy()
    periodic = bool(atoms.pbc.all())
    if not atoms.pbc.any():
        atoms.center(vacuum=10.0)
    elif not periodic:
        raise ConfigError(
            "i-PI applies periodic boundaries in all three directions or none; this "
            f"structure has pbc {atoms.pbc.tolist()}."
        )
    ase.io.write(out / "init.xyz", atoms, format="extxyz")
    path = out / "input.xml"
    path.write_text(ipi_input("init.xyz", address=address, periodic=periodic, **kwargs))
    return path
