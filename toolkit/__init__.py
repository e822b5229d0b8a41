"""reprlab's analysis kernel: torch only, no UI imports.

>>> from toolkit import Session
>>> s = Session.tiny(seed=0)
>>> s.activations(["hello world"], layers=[0, 4]).values.shape
torch.Size([2, 1, 64])
"""

from . import datasets
from .activations import Activations
from .circular import CircularView, circular_view
from .directions import Direction, DirectionRegistry
from .loading import ModelLoadError
from .probes import ProbeCurve, probe_curve
from .session import Session, SessionInfo
from .steering import Steer, logit_shift

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
