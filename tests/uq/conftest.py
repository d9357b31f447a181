from tests.train.conftest import cu_emt, ethanol_small  # noqa: F401  (shared data fixtures)
