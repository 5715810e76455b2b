"""nncli: train neural networks written in plain NumPy from YAML experiment configs.

The Python API mirrors the commands:

    import nncli
    result = nncli.train("configs/pima_logistic.yaml")
    report = nncli.evaluate([result.final_checkpoint])
"""

__version__ = "0.1.0"

from .api import compare_optimizers, components, evaluate, plot_runs, summarize, train, train_seeds  # noqa: E402
from .checkpoint import read_checkpoint  # noqa: E402
from .errors import NncliError  # noqa: E402
from .experiment import load_experiment  # noqa: E402
from .models import Sequential  # noqa: E402

__all__ = [
    "NncliError",
    "Sequential",
    "__version__",
    "compare_optimizers",
    "components",
    "evaluate",
    "load_experiment",
    "plot_runs",
    "read_checkpoint",
    "summarize",
    "train",
    "train_seeds",
]
