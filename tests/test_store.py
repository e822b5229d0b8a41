"""Memory budgets: over-budget extraction streams to a float16 store on disk, not into RAM."""

import gc
import warnings

import pytest
import torch

from reprlab import Session, store

TEXTS = [f"sample text number {i} about {w}" for i, w in enumerate(["cats", "rain", "maps"] * 20)]


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRLAB_CACHE", str(tmp_path))
    return tmp_path / "activations"


def _files(folder):
    return sorted(folder.iterdir()) if folder.exists() else []


def test_over_budget_extraction_goes_to_disk_and_equals_float16_in_ram(tiny, store_dir):
    in_ram = tiny.activations(TEXTS, dtype=torch.float16, batch_size=7, cache=False)
    with pytest.warns(UserWarning, match=r"5 layers x 60 texts need .* over the memory budget"):
        on_disk = tiny.activations(TEXTS, batch_size=7, memory_budget="10kB")
    assert on_disk.on_disk and not in_ram.on_disk
    assert on_disk.values.dtype == torch.float16
    assert torch.equal(on_disk.values, in_ram.values)
    assert on_disk.layer(3).untyped_storage().filename is not None  # a view, not a RAM copy
    assert _files(store_dir) == []  # unlinked at once: nothing to clean up, even after a crash


def test_under_budget_stays_in_ram_without_a_warning(tiny, store_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acts = tiny.activations(TEXTS, memory_budget="1GB")
    assert not acts.on_disk and acts.values.dtype == torch.float32


def test_environment_budget_applies_when_none_is_passed(tiny, store_dir, monkeypatch):
    monkeypatch.setenv("REPRLAB_MEMORY_BUDGET", "1kB")
    with pytest.warns(UserWarning, match="budget of 1.0 kB"):
        assert tiny.activations(TEXTS[:20]).on_disk


def test_disk_store_is_not_counted_as_ram_but_stays_cached(tiny, store_dir):
    with pytest.warns(UserWarning):
        first = tiny.activations(TEXTS, memory_budget=1)
    assert tiny.cache_entries == 1 and tiny.cache_bytes == 0
    assert tiny.cache_disk_bytes == first.nbytes == 5 * 60 * tiny.width * 2
    again = tiny.activations(TEXTS, layers=[1, 2, 3], memory_budget=1)
    assert tiny.cache_hits == 1 and again.on_disk
    assert torch.equal(again.values, first.values[1:4])


def test_interrupted_disk_extraction_leaves_no_file_hook_or_cache_entry(store_dir):
    s = Session.tiny(seed=4)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
        s.activations(TEXTS, batch_size=4, memory_budget=1, progress=interrupt)
    gc.collect()
    assert _files(store_dir) == [] and s.backend.hook_count() == 0 and s.cache_entries == 0
    with pytest.warns(UserWarning):
        assert s.activations(TEXTS[:8], memory_budget=1).on_disk


def test_full_disk_is_a_clear_error_and_the_session_stays_usable(tiny, store_dir, monkeypatch):
    class Usage:
        free = 100

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(OSError, match=r"needs .* but .* has only 100 B free"), \
            pytest.warns(UserWarning):
        tiny.activations(TEXTS, memory_budget=1)
    assert tiny.cache_entries == 0 and tiny.backend.hook_count() == 0
    assert tiny.activations(TEXTS[:3]).values.shape[:2] == (5, 3)


@pytest.mark.parametrize("bad", ["lots", "-5MB", 0, -1, "5 parsecs", "0GB"])
def test_bad_budgets_are_refused_with_the_accepted_forms(tiny, bad):
    with pytest.raises(ValueError, match="size|positive"):
        tiny.activations(TEXTS[:2], memory_budget=bad)


def test_parse_bytes_units_and_available_memory():
    assert store.parse_bytes("2GiB") == 2 * 1024**3
    assert store.parse_bytes(" 1.5 gb ") == 1_500_000_000
    assert store.parse_bytes("300kB") == 300_000
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo")
                 if line.startswith("MemTotal:"))
    assert 0 < store.available_memory() <= total


def test_explorer_header_shows_what_the_cache_holds_on_disk(tiny, store_dir):
    from reprlab.widgets import Explorer

    e = Explorer(tiny, background=False)
    assert "on disk" not in e.header.value
    with pytest.warns(UserWarning):
        tiny.activations(TEXTS, memory_budget=1)
    e.refresh_header()
    assert "MB on disk" in e.header.value
