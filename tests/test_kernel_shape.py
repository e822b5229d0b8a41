"""The kernel's shape: named sites, provenance as a value, one seam for forwards, one-way imports.

The independent reads here are the test's own torch hooks and ``output_hidden_states``, never
the backend under test.
"""

import ast
import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reprlab import Direction, ModelRef, Session, Steer, check_same_model
from reprlab.geometry import project, reference_texts, residual_vector, similarity_matrix
from reprlab.sites import llama_cpp_block, site
from reprlab.steering import steering_edits

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "toolkit"


@pytest.fixture(scope="module")
def s():
    return Session.tiny(seed=0)


# -- sites ------------------------------------------------------------------------------------


def test_every_hidden_state_names_one_site_and_llama_cpp_blocks_follow():
    n = 30
    assert site(0, n).name == "embeddings" and site(n, n).name == "final_norm"
    assert site(12, n).name == "blocks.11.resid_post" == site("blocks.12.resid_pre", n).name
    assert site(-1, n) == site("final_norm", n) and site("blocks.0.resid_pre", n) == site(0, n)
    assert [site(L, n).hidden_state(n) for L in range(n + 1)] == list(range(n + 1))
    assert site("blocks.29.resid_post", n).hidden_state(n) is None  # before the final norm
    assert llama_cpp_block(site(12, n), n) == 11
    assert llama_cpp_block(site("blocks.29.resid_post", n), n) == 29
    for bad in (0, 1, n):
        with pytest.raises(ValueError, match="llama.cpp"):
            llama_cpp_block(site(bad, n), n)
    with pytest.raises(ValueError, match="unknown site"):
        site("blocks.3.attn", n)
    with pytest.raises(ValueError, match="blocks 0..29"):
        site("blocks.30.resid_post", n)


def _stream_reader(s, where):
    """(module, pre) whose input carries the stream at ``where``: the test's own hook point."""
    blocks = s.parts.blocks
    if where.kind == "final_norm":
        return s.parts.lm_head           # the unembedding reads the final norm's output
    if where.block == s.n_blocks - 1:
        return s.parts.final_norm        # the last block's output enters the final norm
    return blocks[where.block + 1] if where.block is not None else blocks[0]


def _read_last_token(s, module, text, edits=None):
    seen = {}

    def hook(mod, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen["h"] = hidden[0, -1].detach().clone()

    ids = torch.tensor([s.tokenizer(text)["input_ids"]])
    with torch.no_grad(), s.hooks(edits=edits or {}):
        handle = module.register_forward_pre_hook(hook, with_kwargs=True)  # after the edits
        try:
            s.model(input_ids=ids)
        finally:
            handle.remove()
    return seen["h"]


@pytest.mark.parametrize("spec", [0, 1, 2, 3, 4, "blocks.3.resid_post"])
def test_alpha_unit_is_the_median_norm_of_the_stream_the_edit_changes(s, spec):
    # The tiny llama has 4 blocks: hidden state 4 is after the final norm, and
    # blocks.3.resid_post is the last block's output before it (no hidden-state index).
    where = s.site(spec)
    module = _stream_reader(s, where)
    texts = reference_texts()[::8]
    s.geometry.set_reference(None)
    norms = [float(_read_last_token(s, module, t).norm()) for t in reference_texts()]
    d = Direction("d", torch.randn(s.width, generator=torch.Generator().manual_seed(1)), 2, "t",
                  source=s.ref)
    steer = Steer(d, layer=spec, alpha=0.25) if isinstance(spec, int) else \
        Steer(d, site=spec, alpha=0.25)
    unit = steer.unit(s)
    # the reference is read in left-padded batches, the test's norms one text at a time
    assert unit == pytest.approx(float(np.median(norms)), rel=5e-3)
    edits = steering_edits(s, steer)
    for text in texts[:5]:
        moved = _read_last_token(s, module, text, edits) - _read_last_token(s, module, text)
        assert float(moved.norm()) == pytest.approx(0.25 * unit, rel=1e-3)
        assert torch.allclose(moved / moved.norm(), residual_vector(s, d), atol=1e-4)


def test_a_read_and_an_edit_at_the_last_layer_are_one_stream(s):
    seen = {}

    def edit(h):
        seen["edit"] = h.clone()  # returns None: the stream passes unchanged

    with s.hooks(reads={s.n_blocks: lambda h: seen.setdefault("read", h.clone())},
                 edits={s.n_blocks: edit}):
        s.activations(["one stream"], progress=False, cache=False)
    hf = s.model(torch.tensor([s.tokenizer("one stream")["input_ids"]]),
                 output_hidden_states=True).hidden_states[s.n_blocks]
    assert torch.allclose(seen["read"][0], hf[0], atol=1e-5)
    assert torch.allclose(seen["edit"][0], hf[0], atol=1e-5)


def test_read_reaches_a_site_without_a_hidden_state_index(s):
    text = "before the norm"
    got = s.read([text], ["blocks.3.resid_post"])[0, 0]
    assert torch.allclose(got, _read_last_token(s, s.parts.final_norm, text), atol=1e-6)


# -- provenance -------------------------------------------------------------------------------


def test_activations_pickle_without_the_session_and_find_it_again(s):
    acts = s.activations(["a pickled text", "and another"], progress=False)
    blob = pickle.dumps(acts)
    assert len(blob) < 20_000  # values and names, not a model
    back = pickle.loads(blob)
    assert back.source == s.ref and torch.equal(back.values, acts.values)
    assert back.session is not None and back.session.fingerprint == s.fingerprint
    torch.save(acts, io.BytesIO())


def test_an_in_place_weight_edit_changes_the_fingerprint_and_the_cache_answers_afresh():
    s = Session.tiny(seed=3)
    texts = ["weights change in place"]
    before, fp = s.activations(texts, progress=False), s.fingerprint
    calls = s.model_calls
    with torch.no_grad():
        s.parts.blocks[1].mlp.down_proj.weight.mul_(3.0)  # a middle layer
    after = s.activations(texts, progress=False)  # noticed without asking for the fingerprint
    assert s.model_calls == calls + 1 and s.fingerprint != fp
    assert not torch.allclose(after.values[2:], before.values[2:])
    with pytest.raises(ValueError, match="another model"):
        Direction.mean_difference(before, after, 2)


def test_a_copy_differing_in_one_middle_weight_has_another_fingerprint():
    a, b = Session.tiny(seed=4), Session.tiny(seed=4)
    assert a.fingerprint == b.fingerprint
    w = b.parts.blocks[2].self_attn.q_proj.weight
    with torch.no_grad():
        w.view(-1)[w.numel() // 2] += 1e-3
    assert a.fingerprint != b.fingerprint


def test_an_edit_through_data_needs_refresh_and_says_so():
    s = Session.tiny(seed=5)
    fp = s.fingerprint
    s.parts.blocks[0].mlp.up_proj.weight.data.mul_(2.0)  # bypasses the version counters
    assert s.refresh_fingerprint() != fp


def test_check_same_model_is_one_policy_for_values_sessions_and_registry():
    a, b = Session.tiny(seed=0), Session.tiny(seed=1)
    pa = a.activations(["x y"], progress=False)
    pb = b.activations(["x y"], progress=False)
    check_same_model(pa, a)
    with pytest.raises(ValueError, match="another model"):
        check_same_model(pa, b)
    with pytest.raises(ValueError, match="another model"):
        Direction.mean_difference(pa, pb, 2)
    d = Direction.mean_difference(pa, a.activations(["z w"], progress=False), 2)
    with pytest.raises(ValueError, match="another model"):
        b.directions.add(d)
    with pytest.raises(ValueError, match="256 dims"):
        check_same_model(ModelRef("wide", "f", 256, 4), a)
    b.directions.add(d.adopted_by(b))


def test_returned_activations_never_alias_the_cache(s):
    texts = ["do not share", "my storage"]
    a = s.activations(texts, progress=False)
    a.values.sub_(1)
    b = s.activations(texts, progress=False)
    assert not torch.equal(a.values, b.values)
    b.values.mul_(0)
    assert s.activations(texts, progress=False).values.abs().sum() > 0
    shared = s.activations(texts, progress=False, copy=False)  # for readers in the kernel
    assert shared.values.data_ptr() == s.activations(texts, copy=False).values.data_ptr()
    t = s.token_activations("tokens too")
    hits = s.cache_hits
    t.values.zero_()
    t2 = s.token_activations("tokens too")
    assert s.cache_hits == hits + 1 and t2.values.abs().sum() > 0


# -- correctness found on the way -------------------------------------------------------------


@pytest.mark.parametrize("inner", ["standardized", "whitened"])
def test_a_layer_override_maps_direction_and_rows_with_one_layers_geometry(s, inner):
    d = Direction("d2", torch.randn(s.width, generator=torch.Generator().manual_seed(2)), 2,
                  "t", source=s.ref)
    acts = s.activations(["read at another layer", "than the direction's"], progress=False)
    m3 = s.geometry.residual_map(inner, 3)
    v = m3(d.vector)
    expected = m3(acts.layer(3)) @ (v / v.norm())
    assert torch.allclose(project(s, d, acts, inner, layer=3), expected, atol=1e-5)


def test_counterfactual_direction_is_the_plain_mean_unembedding_difference(s):
    pairs = [("a", "b"), ("c", "d"), ("e", "f")]
    d = Direction.counterfactual(s, pairs)
    tok = s.tokenizer
    gamma = s.parts.unembedding.double()
    ids = [[tok(w, add_special_tokens=False)["input_ids"][0] for w in p] for p in pairs]
    mean = torch.stack([gamma[j] - gamma[i] for i, j in ids]).mean(0)
    assert torch.allclose(d.vector.double(), mean / mean.norm(), atol=1e-6)


def test_the_similarity_null_and_the_unsteered_distribution_are_computed_once(s, monkeypatch):
    import reprlab.geometry as geometry_module
    import reprlab.steering as steering_module
    from reprlab import compare_steering

    calls = {"null": 0, "probs": 0}
    real_null, real_probs = geometry_module.cosine_null, steering_module.next_token_probs

    def counted_null(*a, **k):
        calls["null"] += 1
        return real_null(*a, **k)

    def counted_probs(*a, **k):
        calls["probs"] += 1
        return real_probs(*a, **k)

    monkeypatch.setattr(geometry_module, "cosine_null", counted_null)
    monkeypatch.setattr(steering_module, "next_token_probs", counted_probs)
    s.geometry.clear()
    ds = [Direction(f"n{i}", torch.randn(s.width), 2, "t", source=s.ref) for i in range(3)]
    first = similarity_matrix(s, ds, "standardized")
    again = similarity_matrix(s, ds[:2], "standardized")
    assert calls["null"] == 1 and first.null_high == again.null_high
    steer = Steer(ds[0], alpha=0.5)
    c = compare_steering(s, "Hello", steer, max_new_tokens=2)
    assert calls["probs"] == 2  # before and after
    compare_steering(s, "Hello", Steer(ds[1], alpha=0.5), max_new_tokens=2,
                     before=c.shift.before)
    assert calls["probs"] == 3  # only the steered one


# -- one seam, one-way imports, set-up --------------------------------------------------------


def _kernel_modules():
    return sorted(p for p in KERNEL.rglob("*.py"))


def test_no_kernel_module_but_the_backend_registers_hooks_or_walks_modules():
    offenders = []
    for path in _kernel_modules():
        if "backends" in path.parts:
            continue
        text = path.read_text()
        for needle in ("register_forward_hook", "register_forward_pre_hook",
                       "register_full_backward_hook", ".modules()", "named_modules("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


def _runtime_imports(path: Path) -> set[str]:
    """Kernel modules that ``path`` imports when it runs (TYPE_CHECKING blocks aside)."""
    package = list(path.relative_to(KERNEL).parts[:-1])
    out = set()

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            mod = base + (node.module.split(".") if node.module else [])
            for alias in node.names:  # `from . import x` and `from .pkg import submodule`
                if KERNEL.joinpath(*mod, alias.name + ".py").exists():
                    out.add(".".join([*mod, alias.name]))
                elif mod:
                    out.add(".".join(mod))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def test_the_kernel_import_drawing_has_no_circle_and_no_import_inside_a_function():
    names = {}
    for path in _kernel_modules():
        rel = path.relative_to(KERNEL).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__").removesuffix("__init__")
        names[name or "__init__"] = path
    graph = {n: {m for m in _runtime_imports(p) if m in names and m != n}
             for n, p in names.items() if n != "__init__"}
    cycles, state = [], {}

    def dfs(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert cycles == []
    assert graph["directions"] >= {"direction_sources", "direction_files", "geometry"}
    assert "directions" not in graph["geometry"] | graph["direction_files"]
    assert "geometry" not in graph["pair_stats"]
    inside = []
    for path in _kernel_modules():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{path.name}:{n.lineno}" for n in ast.walk(fn)
                           if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert inside == []


def test_importing_the_kernel_folder_under_another_name_fails_loudly():
    run = subprocess.run([sys.executable, "-c", "import toolkit"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode != 0 and "import it as `reprlab`" in run.stderr


def test_every_kernel_module_is_in_the_guides_layout_section():
    guide = (ROOT / "docs" / "guide.md").read_text()
    layout = guide[guide.index("## Repository layout"):]
    missing = [p.relative_to(KERNEL).as_posix() for p in _kernel_modules()
               if p.name != "__init__.py" and p.relative_to(KERNEL).as_posix() not in layout]
    assert missing == []
