"""Issue 21: steering judged on prompts nobody tuned it on, the judge checked against an
outside lexicon, and old API names that point to the new ones."""

import inspect

import numpy as np
import pytest

import reprlab
from reprlab import probe_curve

# -- old names point to new ones (until 1.0) ------------------------------------------------------


@pytest.mark.parametrize("old, new", [("circular_view", "circular_analysis"),
                                      ("CircularView", "CircularAnalysis"),
                                      ("hooks", "reprlab.backends"),
                                      ("architecture", "reprlab.backends.architecture")])
def test_a_renamed_module_attribute_names_its_new_name(old, new):
    with pytest.raises(AttributeError, match=new) as info:
        getattr(reprlab, old)
    assert info.value.name == old
    assert not hasattr(reprlab, old)          # hasattr still answers False


def test_every_new_name_in_the_rename_table_exists():
    for old, new in reprlab.RENAMED.items():
        target = new.split()[0]
        assert target.startswith("reprlab"), (old, new)
        parts = target.split(".")[1:]
        obj = reprlab
        for part in parts:
            obj = getattr(obj, part) if hasattr(obj, part) else __import__(
                f"{obj.__name__}.{part}", fromlist=["_"])
        assert obj is not None


def test_an_unknown_attribute_still_raises_plainly():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'$"):
        _ = reprlab.no_such_thing


def test_widgets_still_load_lazily():
    assert reprlab.widgets.__name__ == "reprlab.widgets"


def _acts(tiny):
    return tiny.activations([f"text {i}" for i in range(12)], layers=[0, 1])


# probe_curve lives in probes.py (another helper's file): these wait for the change described
# in the issue-21 report (renamed keywords -> TypeError naming the new keyword).
PENDING = pytest.mark.xfail(strict=True, reason="probes.py: renamed keywords not yet pointed to "
                            "their new names (issue 21, 'Also')")


@PENDING
def test_probe_curve_alpha_names_ridge(tiny):
    with pytest.raises(TypeError, match=r"alpha=.*renamed.*ridge="):
        probe_curve(_acts(tiny), [float(i) for i in range(12)], alpha=10.0)


@PENDING
def test_probe_curve_n_shuffles_names_n_permutations(tiny):
    with pytest.raises(TypeError, match=r"n_shuffles=.*renamed.*n_permutations="):
        probe_curve(_acts(tiny), ["a", "b"] * 6, n_shuffles=3)


def test_probe_curve_old_keywords_fail_today_and_new_ones_exist():
    params = inspect.signature(probe_curve).parameters
    assert "ridge" in params and "n_permutations" in params
    assert "alpha" not in params and "n_shuffles" not in params


def test_the_new_keywords_still_work(tiny):
    curve = probe_curve(_acts(tiny), ["a", "b"] * 6, folds=3, n_permutations=5)
    assert np.isfinite(curve.scores).all()
