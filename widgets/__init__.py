"""reprlab's Jupyter widgets: thin views that bind controls to toolkit calls.

The views (ProbeCurves, ConceptProjection, CircularMap, SteeringPanel, Explorer) arrive with
their issues; this package never computes numerics itself.
"""

__all__: list[str] = []
