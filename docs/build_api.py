"""Build the API reference from the docstrings with pdoc: ``python docs/build_api.py [OUT]``.

``make docs`` runs it (output: docs/api/, not committed) and so does ``make test``. Every module
of ``reprlab`` and ``reprlab.widgets`` is imported and rendered; the build fails (exit 1) when a
module does not import or pdoc warns (an annotation it cannot parse, a docstring it cannot
convert...), naming the module and the problem.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

ROOT = Path(__file__).resolve().parents[1]
DOCFORMAT = "restructuredtext"  # the docstrings use ``literals`` and :func:`roles`


def modules() -> list[str]:
    """Every module of the package (the package's __all__ hides submodules from pdoc)."""
    import reprlab
    import reprlab.widgets

    names = ["reprlab"]
    for package in (reprlab, reprlab.widgets):
        names += [info.name for info in pkgutil.iter_modules(package.__path__,
                                                              package.__name__ + ".")]
    return sorted(set(names), key=lambda n: (n.count("."), n))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT / "docs" / "api"
    names = modules()
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # a module that does not import has no reference
            failed.append(f"{name}: cannot import: {type(err).__name__}: {err}")
    pdoc.render.configure(docformat=DOCFORMAT, footer_text="reprlab API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*names, output_directory=out)
    failed += [f"pdoc: {w.message}" for w in caught if "pdoc" in Path(w.filename).parts
               and "has already been added" not in str(w.message)]  # a package and its module
    if failed:
        print("API reference build failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    print(f"API reference for {len(names)} modules in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
