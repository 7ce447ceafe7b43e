"""Poly (Polytropon / MHR) ⇄ peft 0.21.2's ``peft.tuners.poly.layer.Linear``.

peft stores each head's block of each skill: ``poly_lora_A (h, S, d_in/h, r)`` (the transpose of a LoRA ``A`` block),
``poly_lora_B (h, S, r, d_out/h)`` and the router's ``module_logits (n_tasks, h·S)``. Ours hold whole skills,
``A (S, r, d_in)``, ``B (S, d_out, r)`` and ``Z (n_tasks, h, S)``; head ``q``'s blocks sit at columns (rows)
``q·d/h …`` of them, which is where peft's reshape of the mixed blocks puts them.

peft's layer needs the task of each example (``task_ids``, one per row of the batch), so `forward_kwargs` gives both
forwards the same ids (several tasks in one batch). peft's Poly layer has no ``merge``: our merged module (for one task)
is compared with peft's output for that task in ``tests/peft/test_peft_poly.py``, not in the matrix (``MERGES``).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.poly import Poly

LAYER = "peft.tuners.poly.layer.Linear"
CONFIG = "PolyConfig"
MERGES = False  # peft's Poly layer cannot merge (BaseTunerLayer.merge raises NotImplementedError)
BENCH = dict(r=8, n_skills=4, n_splits=2, n_tasks=4)
CASES = [
    dict(r=4, n_skills=4, n_tasks=1),  # Polytropon, one task
    dict(r=2, n_skills=3, n_splits=2, n_tasks=3),  # MHR: two heads, three tasks in one batch
    dict(r=8, n_skills=2, n_splits=4, n_tasks=2, init_weights=False),  # B Kaiming-uniform instead of zero
]


def forward_kwargs(ours: Poly, x: torch.Tensor) -> dict:
    """One task id per row of ``x``, cycling through the tasks so that a batch mixes them."""
    return {"task_ids": torch.arange(x.shape[0]) % ours.n_tasks}


@torch.no_grad()
def convert(layer, base, name: str) -> Poly:
    if layer.poly_type[name] != "poly":
        raise PeftConversionError(f"poly_type={layer.poly_type[name]!r} is not supported (only 'poly')")
    S, h, r = layer.n_skills[name], layer.n_splits[name], layer.r[name]
    module = Poly(base, r=r, n_tasks=layer.n_tasks[name], n_skills=S, n_splits=h)
    A, B = layer.poly_lora_A[name], layer.poly_lora_B[name]  # (h, S, d_in/h, r), (h, S, r, d_out/h)
    module.A.copy_(A.permute(1, 3, 0, 2).reshape(S, r, module.d_in))  # (S, r, h, d_in/h) → (S, r, d_in)
    module.B.copy_(B.permute(1, 0, 3, 2).reshape(S, module.d_out, r))  # (S, h, d_out/h, r) → (S, d_out, r)
    module.Z.copy_(layer.poly_router[name].module_logits.view(-1, h, S))  # (n_tasks, h, S)
    return module
