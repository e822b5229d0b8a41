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

if __name__ != "reprlab":  # e.g. `import toolkit` from the repository root
    raise ImportError(
        f"the kernel folder was imported as {__name__!r}: import it as `reprlab` (install the "
        "project with `make venv` or `pip install -e .`); a second copy under another name "
        "would hold classes that are not reprlab's")

from . import datasets
from .activations import Activations
from .circular import CircularAnalysis, CircularityStats, circular_analysis, load_cycle
from .directions import Direction
from .geometry import (
    ConceptReadout,
    Projections,
    SimilarityMatrix,
    TokenProjection,
    concept_readout,
    cosine,
    project_texts,
    similarity_matrix,
    token_projection,
)
from .jacobian_lens import fit_jacobian_lens
from .lens_readout import LensReadOut, read_out
from .lenses import LensResult, lens
from .loading import ModelLoadError
from .model_ref import ModelRef, check_same_model
from .pair_stats import PairConsistency, RandomPairNull, pair_consistency, random_pair_null
from .probes import ProbeCurve, probe_curve
from .registry import DirectionRegistry
from .session import Session, SessionInfo
from .sites import Site
from .steer_eval import SteeringEffect, TextJudge, fit_judge, steering_effect
from .steering import AlphaSweep, LogitShift, Steer, Token, alpha_sweep, logit_shift, token_diff
from .steering_comparison import SteeringComparison, compare_steering
from .translators import FittedLens, LensNotFitted, load_lens
from .tuned_lens import fit_tuned_lens
from .types import ApplyTo, CircularMethod, Inner, Method, Mode, Task
from .version import __version__ as __version__

#: Names this module had before, and where each went (until 1.0 an old name fails with an
#: error that names the new one; see CHANGELOG.md).
RENAMED = {
    "circular_view": "reprlab.circular_analysis",
    "CircularView": "reprlab.CircularAnalysis",
    # former submodules (`import reprlab.hooks` itself raises ModuleNotFoundError)
    "hooks": "reprlab.backends (s.backend.hook_count() replaces hook_count(s.parts))",
    "architecture": "reprlab.backends.architecture",
}


def __getattr__(name: str):
    # `rl.widgets` without importing ipywidgets/plotly when only the kernel is used.
    if name == "widgets":
        return importlib.import_module(".widgets", __name__)
    if name in RENAMED:
        raise AttributeError(f"module 'reprlab' has no attribute {name!r}: it was renamed, use "
                             f"{RENAMED[name]} (see CHANGELOG.md)", name=name, obj=None)
    raise AttributeError(f"module 'reprlab' has no attribute {name!r}")


__all__ = [
    "PairConsistency",
    "RandomPairNull",
    "SteeringEffect",
    "TextJudge",
    "fit_judge",
    "pair_consistency",
    "random_pair_null",
    "steering_effect",
    "Activations",
    "AlphaSweep",
    "ApplyTo",
    "CircularAnalysis",
    "CircularMethod",
    "CircularityStats",
    "ConceptReadout",
    "Direction",
    "DirectionRegistry",
    "FittedLens",
    "Inner",
    "LensNotFitted",
    "LensReadOut",
    "LensResult",
    "LogitShift",
    "Method",
    "Mode",
    "ModelLoadError",
    "ModelRef",
    "ProbeCurve",
    "Projections",
    "Session",
    "SessionInfo",
    "Site",
    "SimilarityMatrix",
    "Steer",
    "SteeringComparison",
    "Task",
    "Token",
    "TokenProjection",
    "alpha_sweep",
    "check_same_model",
    "circular_analysis",
    "compare_steering",
    "concept_readout",
    "cosine",
    "datasets",
    "fit_jacobian_lens",
    "fit_tuned_lens",
    "lens",
    "read_out",
    "load_cycle",
    "load_lens",
    "logit_shift",
    "probe_curve",
    "project_texts",
    "similarity_matrix",
    "token_diff",
    "token_projection",
]
