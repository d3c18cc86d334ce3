"""The model zoo: a name -> factory registry (``registry``), the built-in networks (importing this
package registers them), and ``build``: the network a training run asks for, BatchOut installed.

Usage: ``from batchout.models import create_model, list_models``; ``batchout.models.build.build_model(cfg, meta)``

Networks know nothing of training: they normalise [0, 1] pixels inside and expose BatchOut sites.
May import ``layers`` and ``config`` (a run's settings), nothing else of batchout but ``errors``.
"""

# The model modules are imported for their @register_model side effect.
from batchout.models import lenet, paper_cifar, resnet, vgg  # noqa: F401
from batchout.models.registry import create_model, list_models, model_knobs, register_model

__all__ = ["create_model", "list_models", "model_knobs", "register_model"]
