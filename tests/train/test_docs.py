from pathlib import Path
from typing import get_args

from pydantic import BaseModel

from mlff.models.registry import architectures, get_architecture
from mlff.train.config import TrainConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def _keys(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        yield prefix + name
        annotation = field.annotation
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:  # an optional section, e.g. finetune
            annotation = options[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _keys(annotation, f"{prefix}{name}.")


def test_every_config_key_is_documented():
    missing = [key for key in _keys(TrainConfig) if f"`{key}`" not in DOC]
    for name in architectures():
        missing += [k for k in _keys(get_architecture(name).Config, "model.") if f"`{k}`" not in DOC]
    assert not missing, f"docs/configuration.md lacks {missing}"
