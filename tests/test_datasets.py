"""Built-in concept data: sizes, balance and shapes the kernel relies on."""

from collections import Counter

import pytest

from reprlab import datasets


def test_names_list_every_builtin():
    assert datasets.names() == ["days", "hours", "months", "pairs", "prompts", "sentiment",
                                "truth"]


@pytest.mark.parametrize("name", ["sentiment", "truth"])
def test_labelled_sets_are_balanced_and_interactive_sized(name):
    data = datasets.load(name)
    counts = Counter(data.labels)
    assert len(counts) == 2 and len(set(counts.values())) == 1
    assert 150 <= len(data) <= 400
    assert len(set(data.texts)) == len(data.texts)
    assert all(len(t.split()) <= 15 for t in data.texts)


@pytest.mark.parametrize("name, n_items", [("days", 7), ("months", 12), ("hours", 12)])
def test_cycles_place_each_item_in_every_template(name, n_items):
    cycle = datasets.load(name)
    assert len(cycle.items) == n_items and len(cycle.templates) >= 5
    examples = cycle.examples()
    assert len(examples) == n_items * len(cycle.templates)
    assert all(item in text for text, item in examples)


def test_pairs_have_at_least_twenty_five_per_concept():
    pairs = datasets.load("pairs")
    expected = {"male_female", "singular_plural", "country_capital", "lower_upper",
                "present_past", "adj_comparative", "adj_adverb"}
    assert set(pairs) == expected
    for concept in pairs.values():
        assert len(concept) >= 25
        assert all(len(p) == 2 and p[0] != p[1] for p in concept.pairs)
        assert len(set(concept.pairs)) == len(concept.pairs)
