"""``mlff import``: a mace-torch file to an .mlff model that ``mlff info`` traces back."""

from __future__ import annotations

from pathlib import Path

from mlff.cli.main import main
from mlff.models.io import read_metadata

GOLDEN = Path(__file__).parents[1] / "imports" / "golden" / "mace"


def test_import_writes_a_model_with_provenance(tmp_path, capsys):
    out = tmp_path / "tiny.mlff"
    assert main(["import", str(GOLDEN / "tiny_zbl.pt"), "--out", str(out)]) == 0
    provenance = read_metadata(out)["provenance"]
    assert provenance["code"] == "mace-torch" and provenance["code_version"] == "0.3.16"
    assert main(["info", str(out)]) == 0
    assert provenance["sha256"][:12] in capsys.readouterr().out


def test_import_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["import", str(GOLDEN / "tiny_zbl.pt"), "--out", str(tmp_path / "x.mlff"),
                 "--head", "pbe"]) == 2
    assert "no head 'pbe'" in capsys.readouterr().err
    assert main(["import", str(GOLDEN / "reference.json"), "--out", str(tmp_path / "x.mlff")]) == 2
    assert "a mace-torch .model / .pt file" in capsys.readouterr().err
