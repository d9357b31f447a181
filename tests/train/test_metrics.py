import pytest

from mlff.data.dataset import GraphDataset
from mlff.train.trainer import evaluate
from mlff.validate.errors import error_metrics, predict

from .conftest import small_config


def test_training_metrics_equal_evaluate_metrics(tmp_path, cu_emt):
    """The training log / model file and `mlff evaluate` report the same numbers by the same names."""
    from mlff.train.trainer import train

    config = small_config(cu_emt, max_epochs=1)
    config["training"]["loss"] = {"stress_weight": 1.0}
    result = train(config, out_dir=tmp_path / "run", progress=False)
    import mlff

    model = mlff.load_model(result.model_path)
    dataset = GraphDataset.from_file(cu_emt, model.cutoff)
    trained = evaluate(model, dataset, batch_size=5, compute_stress=True)
    reported = error_metrics(predict(model, dataset, batch_size=3), dataset)["overall"]
    shared = [k for k in trained if k in reported]
    assert {"energy_mae_meV_per_atom", "forces_rmse_meV_per_A", "stress_mae_meV_per_A3",
            "num_energy", "num_stress", "num_force_components"} <= set(shared)
    for key in shared:
        assert trained[key] == pytest.approx(reported[key], rel=1e-9), key
