"""nncli: train neural networks written in plain NumPy from YAML experiment configs.

The Python API mirrors the commands:

    import nncli
    result = nncli.train("configs/pima_logistic.yaml")
    report = nncli.evaluate([result.final_checkpoint])
    pictures = nncli.visualize(result.final_checkpoint, ["weights", "errors"], out="pictures")
    page = nncli.report([result.run_dir], out="report.html")
"""

from ._version import __version__
from .api import compare_optimizers, components, evaluate, plot_runs, report, summarize, sweep, train, train_seeds, visualize
from .checkpoint import read_checkpoint
from .errors import NncliError
from .experiment import load_experiment
from .export import export_onnx
from .models import Sequential

__all__ = [
    "NncliError",
    "Sequential",
    "__version__",
    "compare_optimizers",
    "components",
    "evaluate",
    "export_onnx",
    "load_experiment",
    "plot_runs",
    "read_checkpoint",
    "report",
    "summarize",
    "sweep",
    "train",
    "train_seeds",
    "visualize",
]
