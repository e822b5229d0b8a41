"""reprlab's Jupyter views: thin bindings of controls to kernel calls, rendered with plotly.

>>> from reprlab import Session
>>> from reprlab.widgets import ProbeCurves
>>> ProbeCurves(Session.load(), dataset="truth")     # doctest: +SKIP
"""

from .circular import CircularMap
from .explorer import Explorer
from .lens import LensView
from .probe_curves import ProbeCurves
from .projection import ConceptProjection
from .steering import SteeringPanel

__all__ = ["CircularMap", "ConceptProjection", "Explorer", "LensView", "ProbeCurves",
           "SteeringPanel"]
