"""The checks of ``mlff validate``, one module each; every module exposes ``NAME``,
``TITLE``, an options dataclass and ``run(...) -> CheckResult``."""
