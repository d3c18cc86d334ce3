"""The model zoo: importing this package registers the built-in models.

Usage: ``from batchout.models import create_model, list_models``
"""

# The model modules are imported for their @register_model side effect.
from batchout.models import lenet, paper_cifar, resnet, vgg  # noqa: F401
from batchout.models.registry import create_model, list_models, model_knobs, register_model

__all__ = ["create_model", "list_models", "model_knobs", "register_model"]
