"""ReFT (LoReFT, DiReFT) on the tiny transformer: what the edit can and cannot change, where it acts, how R stays
orthonormal, and that a false claim of orthonormal rows is caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import adapterspec
from adapterspec.catalog import load_catalog, verify_entry
from adapterspec.methods.reft import ReFT

D64 = torch.float64
ENTRIES = Path(__file__).resolve().parent.parent / "entries"


def make(seed=0, d=16, H=4, **hp) -> tuple[ReFT, torch.Tensor]:
    """A randomized ReFT module (float64) on a pretrained-looking tiny transformer, and 3 sequences of 9 tokens."""
    g = torch.Generator().manual_seed(seed)
    base = ReFT.example_base(d, H, g, D64)
    X = ReFT.example_inputs(base, 3, g, D64)
    torch.manual_seed(seed)
    module = adapterspec.create("reft", base, **hp).to(D64)
    return adapterspec.randomize_(module, torch.Generator().manual_seed(seed + 1)), X


def hidden(module: ReFT, X: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The frozen model's hidden states and the intervened model's, ``[h_0, …, h_L]`` each."""
    with torch.no_grad():
        _, plain = module.base(X, return_hidden=True)
        _, edited = module.base(X, interventions={module.layer: module.intervene}, return_hidden=True)
    return plain, edited


# -- the subspace: what LoReFT changes -------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [1, 3, 16])
def test_loreft_edit_lies_in_the_row_space_of_R_and_sets_its_coordinates_to_Wh_plus_b(r):
    module, _ = make(r=r)
    h = torch.randn(50, 16, generator=torch.Generator().manual_seed(3), dtype=D64)  # 50 hidden states
    with torch.no_grad():
        R, W, b = module.R()[0], module.W[0], module.b[0]  # (r, d), (r, d), (r,)
        out = module.phi(h, R, W, b)
        complement = torch.eye(16, dtype=D64) - R.T @ R  # projector onto the orthogonal complement of rowspace(R)
        # h − Φ(h) ∈ rowspace(R): the complement part is untouched
        torch.testing.assert_close((out - h) @ complement, torch.zeros_like(h), rtol=0, atol=1e-12)
        # the coordinates in the subspace are replaced by the learned source W h + b
        torch.testing.assert_close(out @ R.T, h @ W.T + b, rtol=0, atol=1e-12)
        assert float((out - h).norm(dim=1).min()) > 1e-3  # the edit is not zero anywhere
        if r < 16:
            assert float(complement.norm()) > 1.0  # a real complement exists, so the first check could fail
    # the edit has rank ≤ r across inputs
    assert int(torch.linalg.matrix_rank(out - h)) <= r


def test_direft_edit_lies_in_the_row_space_of_W2_but_does_not_replace_coordinates():
    module, _ = make(r=3, direct=True)
    h = torch.randn(40, 16, generator=torch.Generator().manual_seed(4), dtype=D64)
    with torch.no_grad():
        W2, W1, b = module.R()[0], module.W[0], module.b[0]
        out = module.phi(h, W2, W1, b)
        torch.testing.assert_close(out - h, (h @ W1.T + b) @ W2, rtol=0, atol=1e-12)  # h + W2ᵀ(W1 h + b)
        Q = torch.linalg.qr(W2.T).Q  # (d, r) orthonormal basis of rowspace(W2)
        delta = out - h
        torch.testing.assert_close(delta - delta @ Q @ Q.T, torch.zeros_like(h), rtol=0, atol=1e-12)
        # no orthonormality and no replacement: R Φ(h) ≠ W h + b
        assert float((W2 @ W2.T - torch.eye(3, dtype=D64)).abs().max()) > 1e-2
        assert float((out @ W2.T - (h @ W1.T + b)).abs().max()) > 1e-2


# -- the parameterization keeps R R^T = I ----------------------------------------------------------------------------
def test_qr_parameterization_keeps_orthonormal_rows_through_training_and_reproduces_any_R():
    module, X = make(r=4)
    opt = torch.optim.SGD(module.trainable_parameters().values(), lr=5.0)  # deliberately huge steps
    for _ in range(5):
        loss = module(X).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        R = module.R()  # (2, 4, 16)
        torch.testing.assert_close(R @ R.mT, torch.eye(4, dtype=D64).expand(2, 4, 4), rtol=0, atol=1e-12)
        # any R with orthonormal rows (pyreft stores Rᵀ) is reproduced exactly by A = Rᵀ
        target = torch.linalg.qr(torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(5), dtype=D64)).Q.mT
        module.A.copy_(target.mT)
        torch.testing.assert_close(module.R(), target, rtol=0, atol=1e-12)


# -- where it acts: one layer, the first p and the last s positions ----------------------------------------------------
@pytest.mark.parametrize("hp, positions, edited", [
    (dict(p=2, s=3), (2, 3), [0, 1, 6, 7, 8]),
    (dict(p=0, s=1), (0, 1), [8]),
    (dict(p=3, s=0), (3, 0), [0, 1, 2]),
    (dict(p=5, s=6), (4, 5), list(range(9))),  # T = 9 < 11: p ← min(5, ⌊9/2⌋), s ← min(6, ⌈9/2⌉)
    (dict(p=1, s=6), (1, 6), [0, 3, 4, 5, 6, 7, 8]),
    (dict(p=1, s=9), (1, 5), [0, 4, 5, 6, 7, 8]),  # T < 10: s ← min(9, ⌈9/2⌉) = 5; positions 1 … 3 stay
])
def test_only_the_chosen_positions_of_the_chosen_layer_change(hp, positions, edited):
    module, X = make(layer=1, **hp)
    assert module.positions(9) == positions
    plain, new = hidden(module, X)
    torch.testing.assert_close(new[0], plain[0], rtol=0, atol=0)  # layers before are untouched
    moved = (new[1] - plain[1]).abs().amax(dim=(0, 2))  # (T,)
    assert [t for t in range(9) if moved[t] > 1e-9] == edited


def test_positions_follow_the_paper_not_the_official_code_for_odd_short_prompts():
    """Paper: s ← min(s, ⌈n/2⌉); pyreft's get_intervention_locations: min(s, n // 2), one fewer for odd n."""
    module, _ = make(p=4, s=4)
    assert module.positions(7) == (3, 4)  # pyreft would give (3, 3)
    assert module.positions(6) == (3, 3)
    assert module.positions(8) == (4, 4)


def test_untied_uses_separate_parameters_for_prefix_and_suffix():
    module, X = make(p=2, s=2)
    assert module.k == 2 and module.num_trainable() == 2 * (2 * 4 * 16 + 4)
    with torch.no_grad():
        plain, _ = hidden(module, X)
        h = plain[1]
        R, W, b = module.R(), module.W, module.b
        out = module.intervene(h)
        torch.testing.assert_close(out[:, :2], module.phi(h[:, :2], R[0], W[0], b[0]))
        torch.testing.assert_close(out[:, -2:], module.phi(h[:, -2:], R[1], W[1], b[1]))
        assert float((module.phi(h[:, -2:], R[0], W[0], b[0]) - out[:, -2:]).abs().max()) > 1e-3
    tied, _ = make(p=2, s=2, tied=True)
    assert tied.k == 1 and tied.num_trainable() == 2 * 4 * 16 + 4


# -- init ------------------------------------------------------------------------------------------------------------
def test_not_identity_at_init_like_the_official_code_unless_asked():
    g = torch.Generator().manual_seed(0)
    base = ReFT.example_base(16, 4, g, D64)
    X = ReFT.example_inputs(base, 3, g, D64)
    with torch.no_grad():
        y = base(X)
        for direct in (False, True):
            default = adapterspec.create("reft", base, direct=direct).to(D64)
            assert float((default(X) - y).abs().max()) > 1e-3
            R = default.R()
            if not direct:  # random orthonormal R, W and b as an nn.Linear: W h + b ≠ R h
                torch.testing.assert_close(R @ R.mT, torch.eye(4, dtype=D64).expand(2, 4, 4), rtol=0, atol=1e-12)
            assert float(default.W.abs().max()) <= 16**-0.5 and float(default.b.abs().max()) <= 16**-0.5
            start = adapterspec.create("reft", base, direct=direct, identity_init=True).to(D64)
            torch.testing.assert_close(start(X), y, rtol=0, atol=1e-12)


# -- errors ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hp, match", [
    (dict(r=0), "r=0 must be between 1 and d_model=16"),
    (dict(r=17), "r=17 must be between 1 and d_model=16"),
    (dict(layer=3), "layer=3 must be a hidden state index 0 … n_layers=2"),
    (dict(p=0, s=0), "p \\+ s ≥ 1"),
    (dict(p=-1), "must be non-negative"),
])
def test_bad_hyperparameters_are_actionable(hp, match):
    base = ReFT.example_base(16, 4, torch.Generator().manual_seed(0), D64)
    with pytest.raises(ValueError, match=match):
        adapterspec.create("reft", base, **hp)


# -- the generic check of orthonormal rows catches a false claim ---------------------------------------------------------
def _catalog(tmp_path: Path, old: str, new: str):
    root = tmp_path / "entries"
    root.mkdir()
    for path in ENTRIES.glob("*.yaml"):  # the whole catalog, so that every related entry resolves
        shutil.copy(path, root)
    text = (root / "reft.yaml").read_text(encoding="utf-8")
    assert old in text
    (root / "reft.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_catalog(root).entries["reft"]


@pytest.mark.parametrize("old, new, expect", [
    # DiReFT's W2 has no orthonormal rows: claiming them there is caught
    ("  - condition: direct\n    semi_orthogonal: []\n", "", "orthonormal rows R [d_model=16, n_heads=4, direct=True]"),
    # W is no orthonormal basis either
    ("  semi_orthogonal:\n  - R\n", "  semi_orthogonal:\n  - W\n", "orthonormal rows W [d_model=16, n_heads=4]"),
    # nor is the token embedding E (V × d, V = 11 ≤ d)
    ("  semi_orthogonal:\n  - R\n", "  semi_orthogonal:\n  - E\n", "orthonormal rows E [d_model=16, n_heads=4]"),
    ("  semi_orthogonal:\n  - R\n", "  semi_orthogonal:\n  - r\n", "must be a symbol of the module holding"),
])
def test_false_claims_of_orthonormal_rows_are_caught(tmp_path, old, new, expect):
    result = verify_entry(_catalog(tmp_path, old, new))
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and "reft.yaml" in message, message


# -- the frozen model, as pseudocode sees it -------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_ops_run_the_tiny_transformer_like_the_module(bias):
    """`ops.tiny_block`, `ops.layer_norm` and `tiny.model_symbols` are a second, plain-tensor formulation of the frozen
    model: from token ids to logits they agree with `TinyTransformer` (biases or none)."""
    from adapterspec import ops
    from adapterspec.tiny import TinyConfig, TinyTransformer, model_symbols, pretrained_like_

    model = TinyTransformer(TinyConfig(vocab_size=11, d_model=16, n_heads=4, n_layers=3, bias=bias, dtype=D64))
    pretrained_like_(model, torch.Generator().manual_seed(0))
    S = model_symbols(model)
    x = torch.randint(11, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, hidden = model(x, return_hidden=True)
        h = S["E"][x] + S["P"][:7]
        for l, w in enumerate(S["blocks"]):
            torch.testing.assert_close(h, hidden[l], rtol=0, atol=1e-13)
            h = ops.tiny_block(h, w, S["H"])
        logits = ops.layer_norm(h, S["g_f"], S["b_f"]) @ S["U"].T
        torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-12)
