"""Training: the README's snippet runs unchanged and its loss falls; a
layer of each tree polynomial learns."""
import contextlib
import io
import os
import re

import torch

import polyattn

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_training_snippet_loss_decreases():
    with open(README) as f:
        snippet = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), {})
    losses = [float(line.split()[1]) for line in out.getvalue().splitlines()]
    assert len(losses) == 5
    assert losses[-1] < 0.5 * losses[0], losses


def test_layer_learns_to_copy_the_first_position():
    torch.manual_seed(1)
    layer = polyattn.PolyAttention(8, heads=1, poly="x1*x2", head_dim=8)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        x = torch.randn(16, 6, 8)
        x[:, 0, 0] = 4.0                         # a marker on position 0
        loss = torch.nn.functional.mse_loss(layer(x), x[:, :1].expand(-1, 6, -1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
