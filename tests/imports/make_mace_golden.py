"""Regenerate ``tests/imports/golden/mace/`` (run from the repository root, mlff's venv):

    python -m tests.imports.make_mace_golden [PEER_PYTHON]

mace-torch (in its own environment, default /tmp/peers/venv-mace/bin/python) builds the
models of :data:`mace_cases.GOLDEN_FILES` and :data:`mace_cases.GOLDEN_IMPORTS` and
evaluates them; the small ones are kept as mace-torch files, the others as the ``.mlff``
files mlff imports them to; ``reference.json`` holds mace-torch's float64 results on
``structures.extxyz``. Only regenerate after a deliberate change of the cases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ase.io

from mlff.imports.mace import load_mace
from mlff.models.io import save_model
from tests.imports import mace_cases

GOLDEN = Path(__file__).parent / "golden" / "mace"


def main(peer_python: str = "/tmp/peers/venv-mace/bin/python") -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    ase.io.write(GOLDEN / "structures.extxyz", mace_cases.structures())
    models = {**mace_cases.GOLDEN_FILES,
              **{name: mace_cases.MODELS[name] for name in mace_cases.GOLDEN_IMPORTS}}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps(mace_cases.spec(str(GOLDEN / "structures.extxyz"), models)))
        subprocess.run([peer_python, str(Path(__file__).parent / "mace_peer.py"), str(spec),
                        f"{tmp}/out"], check=True)
        for name in mace_cases.GOLDEN_FILES:
            for kind in ("pt", "model"):
                shutil.copy(f"{tmp}/out/{name}.{kind}", GOLDEN / f"{name}.{kind}")
        for name in mace_cases.GOLDEN_IMPORTS:
            potential, _ = load_mace(f"{tmp}/out/{name}.pt")
            potential.metadata["provenance"]["source"] = f"{name}.pt"
            save_model(potential, GOLDEN / f"{name}.mlff")
        shutil.copy(f"{tmp}/out/reference.json", GOLDEN / "reference.json")


if __name__ == "__main__":
    main(*sys.argv[1:])
