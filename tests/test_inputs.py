"""Bad input raises errors that name the problem, and the session stays usable."""

import pytest

from reprlab import ModelLoadError, Session, datasets


@pytest.mark.parametrize(
    "texts, error, words",
    [
        ([], ValueError, "empty"),
        ("just one string", TypeError, "wrap it"),
        (["fine", 3], TypeError, "texts[1] is int"),
        (["fine", "   "], ValueError, "texts[1] is empty"),
        (None, TypeError, "list of strings"),
    ],
)
def test_bad_texts_are_named(tiny, texts, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        tiny.activations(texts)


@pytest.mark.parametrize("layers", [5, [0, 99], -6])
def test_unknown_layer_says_the_valid_range(tiny, layers):
    with pytest.raises(ValueError, match=r"out of range: this model has hidden states 0\.\.4"):
        tiny.activations(["abc"], layers=layers)


def test_empty_layer_list_is_rejected(tiny):
    with pytest.raises(ValueError, match="layers is empty"):
        tiny.activations(["abc"], layers=[])


def test_word_not_found_names_the_text(tiny):
    with pytest.raises(ValueError, match=r"word 'Friday' not found in text 'see you Monday'"):
        tiny.activations(["see you Friday", "see you Monday"], at="Friday")


def test_token_index_out_of_range_names_the_text(tiny):
    with pytest.raises(IndexError, match=r"token index 7 is out of range for text 'abc'"):
        tiny.activations(["abc"], at=7)


@pytest.mark.parametrize("at", [None, 1.5, True, ""])
def test_bad_position_spec(tiny, at):
    with pytest.raises((TypeError, ValueError), match="at"):
        tiny.activations(["abc"], at=at)


def test_session_still_works_after_errors(tiny):
    for bad in ([], ["x", 1]):
        with pytest.raises((ValueError, TypeError)):
            tiny.activations(bad)
    assert tiny.activations(["abc"]).values.shape[1] == 1


@pytest.mark.parametrize("spec, words", [
    ("/no/such/model", "model path not found"),
    ("./missing-folder", "model path not found"),
    ("missing-model.gguf", "GGUF file not found"),
])
def test_unknown_model_path_is_named(spec, words):
    with pytest.raises(ModelLoadError, match=words):
        Session.load(spec)


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        Session.load(str(tmp_path))


def test_generate_rejects_bad_arguments(tiny):
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny.generate("abc", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        tiny.generate("abc", temperature=-1)
    with pytest.raises(ValueError, match="empty"):
        tiny.generate("")


def test_dataset_typo_lists_the_names():
    with pytest.raises(KeyError, match="unknown dataset .sentimnt.; available: days, hours"):
        datasets.load("sentimnt")


def test_unknown_tiny_arch_lists_choices():
    with pytest.raises(ValueError, match="unknown tiny arch 'bert'"):
        Session.tiny(arch="bert")
