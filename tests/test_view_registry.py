"""Views and the session's registry: no silent replacement, and no work by views no one sees."""

import torch

from reprlab import Direction, Session


def other_direction(session: Session, name: str, layer: int = 1) -> Direction:
    g = torch.Generator().manual_seed(7)
    return Direction(name, torch.randn(session.width, generator=g), layer, "test")


def test_views_given_a_taken_name_register_a_copy_and_select_it(tiny):
    from reprlab.widgets import ConceptProjection, SteeringPanel

    first = Direction("mood", torch.ones(tiny.width), 2, "test")
    tiny.directions.add(first)
    clash = other_direction(tiny, "mood")
    steering = SteeringPanel(tiny, direction=clash, background=False, debounce=0)
    projection = ConceptProjection(tiny, direction=clash, background=False)
    assert tiny.directions["mood"] is first
    assert tiny.directions.names() == ["mood", "mood-2"]
    assert torch.equal(tiny.directions["mood-2"].vector, clash.vector)
    assert steering.direction.value == "mood-2" and projection.direction.value == "mood-2"
    assert steering.result.steer.direction.name == "mood-2"


def test_rerunning_a_panel_leaves_only_the_shown_one_reacting(tiny):
    from reprlab.widgets import SteeringPanel

    tiny.directions.add(other_direction(tiny, "start"))
    panels = []
    for _ in range(10):  # the cell re-run ten times: each run removes the last display
        if panels:
            panels[-1]._view_count = 0
        panels.append(SteeringPanel(tiny, background=False, debounce=0))
        panels[-1]._view_count = 1  # the front end shows it
    forwards = []
    handle = tiny.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        tiny.directions.add(other_direction(tiny, "new", layer=2))
    finally:
        handle.remove()
    assert [p.direction.value for p in panels] == ["start"] * 9 + ["new"]
    one_panel = 1 + panels[-1].max_tokens.value + 2  # logit shift + steered tokens (+ slack)
    assert 0 < len(forwards) <= one_panel
    panels[3]._view_count = 1  # shown again: catches up with the registry, selects nothing new
    assert "new" in panels[3].direction.options and panels[3].direction.value == "start"


def test_closed_views_stop_listening(tiny):
    from reprlab.widgets import ConceptProjection, SteeringPanel

    tiny.directions.add(other_direction(tiny, "start"))
    before = tiny.directions.listeners
    views = [SteeringPanel(tiny, background=False, debounce=0),
             ConceptProjection(tiny, background=False)]
    assert tiny.directions.listeners == before + 2
    for view in views:
        view.close()
    assert tiny.directions.listeners == before
    tiny.directions.add(other_direction(tiny, "later", layer=2))  # reaches no closed view
    assert all(v.direction.value == "start" for v in views)


def narrow_session() -> Session:
    import transformers

    from reprlab.tiny import byte_tokenizer

    tok = byte_tokenizer()
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1,
                                      intermediate_size=64, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return Session(transformers.LlamaForCausalLM(config), tok, name="narrow", device="cpu")


def test_explorer_saves_and_loads_the_registry_with_errors_in_its_status(tiny, tmp_path):
    from reprlab.widgets import Explorer

    e = Explorer(tiny, background=False)  # its first tab builds nothing into the registry
    tiny.directions.add(other_direction(tiny, "mood"))
    e.registry_path.value = str(tmp_path / "dirs.safetensors")
    e.save_button.click()
    assert "Saved 1 directions" in e.model_status.value
    tiny.directions.remove("mood")
    e.load_directions_button.click()
    assert "Loaded 1 directions: mood" in e.model_status.value
    assert torch.equal(tiny.directions["mood"].vector, other_direction(tiny, "mood").vector)
    e.registry_path.value = str(tmp_path / "missing.safetensors")
    e.load_directions_button.click()
    assert "Could not load directions" in e.model_status.value
    assert "no directions file" in e.model_status.value


def test_explorer_new_model_carries_directions_over_or_saves_them(tiny, tmp_path, monkeypatch):
    from reprlab.widgets import Explorer

    monkeypatch.setenv("REPRLAB_CACHE", str(tmp_path))
    e = Explorer(tiny, background=False)
    tiny.directions.add(other_direction(tiny, "mood"))
    other = Session.tiny(seed=3)  # same width, other weights
    note = e.use_session(other)
    assert "Carried 1 directions" in note and "mood" in other.directions
    assert other.directions["mood"].fingerprint == other.fingerprint
    narrow = narrow_session()
    note = e.use_session(narrow)
    assert "were not carried over (width 64 does not fit width 32)" in note
    (saved,) = (tmp_path / "directions").glob("*.safetensors")
    assert str(saved) in note and len(narrow.directions) == 0
    assert [d.name for d in Session.tiny(seed=3).directions.load(saved)] == ["mood"]
