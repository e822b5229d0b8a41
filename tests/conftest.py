"""Shared fixtures: a tiny random model for unit tests, the embedded SmolLM2 for integration."""

import pytest
import torch

from reprlab import Session


@pytest.fixture
def tiny() -> Session:
    return Session.tiny(seed=0)


@pytest.fixture(scope="session")
def smol() -> Session:
    return Session.load()


def reference_hidden_states(session: Session, text: str) -> torch.Tensor:
    """All hidden states ``[layers, tokens, width]`` of one unpadded text, the transformers way."""
    enc = session.tokenizer(text, return_tensors="pt").to(session.device)
    with torch.inference_mode():
        out = session.model(**enc, output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].float()


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4):
    """Each vector agrees to ``rtol`` of its own norm (robust to outlier-dimension magnitudes)."""
    err = (actual - expected).norm(dim=-1)
    scale = expected.norm(dim=-1).clamp_min(1e-6)
    worst = (err / scale).max().item()
    assert worst <= rtol, f"relative error {worst:.2e} > {rtol:.0e}"


def expected_at(ref: torch.Tensor, at, position: int) -> torch.Tensor:
    """What ``activations(at=...)`` should return for one text, from its reference states."""
    if at == "mean":
        return ref.mean(1)
    if at == "last":
        return ref[:, -1]
    return ref[:, at if isinstance(at, int) else position]
