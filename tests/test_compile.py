"""torch.compile traces the full-clip forward and the streaming step without graph breaks."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model


@pytest.mark.slow
def test_compiled_forward_and_step_equal_eager():
    model = tiny_model()
    video = torch.rand(1, 4, 3, 32, 32)
    forward = torch.compile(model, fullgraph=True)  # fullgraph: a graph break is an error
    step = torch.compile(model.step, fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(forward(video).logits, model(video).logits, atol=1e-5, rtol=1e-5)
        eager_state = compiled_state = model.init_state(1)
        for t in range(4):
            eager, eager_state = model.step(video[:, t], eager_state)
            compiled, compiled_state = step(video[:, t], compiled_state)
            torch.testing.assert_close(compiled.encoded, eager.encoded, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(compiled.logits, eager.logits, atol=1e-5, rtol=1e-5)
