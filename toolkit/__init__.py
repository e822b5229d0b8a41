"""reprlab: look inside a language model from a notebook.

The package root is the analysis kernel (torch only, no UI imports); the Jupyter views live in
:mod:`reprlab.widgets`, imported on first use.

>>> import reprlab as rl
>>> s = rl.Session.tiny(seed=0)
>>> s.activations(["hello world"], layers=[0, 4]).values.shape
torch.Size([2, 1, 64])
>>> rl.widgets.Explorer(rl.Session.load())     # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from . import datasets
from .activations import Activations
from .circular import CircularView, circular_view
from .directions import Direction, DirectionRegistry
from .loading import ModelLoadError
from .probes import ProbeCurve, probe_curve
from .session import Session, SessionInfo
from .steering import Steer, logit_shift

try:
    __version__ = version("reprlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    # `rl.widgets` without importing ipywidgets/plotly when only the kernel is used.
    if name == "widgets":
        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module 'reprlab' has no attribute {name!r}")


__all__ = [
    "Activations",
    "CircularView",
    "Direction",
    "DirectionRegistry",
    "ModelLoadError",
    "ProbeCurve",
    "Session",
    "SessionInfo",
    "Steer",
    "circular_view",
    "datasets",
    "logit_shift",
    "probe_curve",
]
