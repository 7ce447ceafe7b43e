"""Does our module compute what peft's layer computes? The equality matrix, run for real.

For every case of a converter (`adapterspec.interop.peft`), every layer shape and both float32 and float64: build a
one-layer model, wrap it with ``peft.get_peft_model``, move *every* trainable peft tensor away from its init (an
identity-at-init adapter would otherwise agree with anything), convert the layer with `from_peft`, and compare:

* outputs: ``from_peft(layer)(x)`` against ``layer(x)``, on a ``(2, 5, d_in)`` batch (for a base other than an
  ``nn.Linear``, such as an embedding, on two of the method's ``example_inputs``: token ids); a layer whose forward
  needs more than ``x`` (Poly's task ids) gets the keyword arguments its converter's ``forward_kwargs(ours, x)``
  returns, and so does our module;
* merged weights: our ``W'`` against the weight peft writes into the base layer on ``merge()``, and the outputs of the
  two merged layers (ours merged against peft's merged), unless the converter says peft's layer cannot merge
  (``MERGES = False``: Poly, whose merge per task its own tests compare);
* trainable parameters: our ``num_trainable()`` against peft's count of ``requires_grad`` tensors for the same config,
  and, given the entry's formula, the formula evaluated at the converted module's hyperparameters.

A case also fails if the randomised peft layer still computes what its base layer does (the comparison could not fail).

The tests assert on these results; the site prints them on each method page. peft is imported here, so this module
is only used where peft is installed (tests, the site build).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from adapterspec.catalog.formula import evaluate_formula
from adapterspec.interop.peft import converters, from_peft, peft_config
from adapterspec.registry import adapter_class, hyperparameters

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}  # max |ours − peft| / max |peft|
SHAPES = [(24, 40), (40, 24)]  # (d_in, d_out): wide and tall


@dataclass
class CaseResult:
    """One (config, shape, dtype) of the matrix."""

    slug: str
    config: dict
    shape: tuple[int, int]
    dtype: str
    output_error: float  # max |ours − peft| / max |peft|
    merged_error: float | None  # same, for the merged weights (None: not mergeable)
    ours_params: int
    peft_params: int
    tolerance: float
    moved: float = 0.0  # max |peft − base| / max |base|: how far the randomised adapter is from the identity
    formula_params: int | None = None  # the entry's formula at the converted module's hyperparameters
    error: str | None = None  # an exception message, if the case could not run

    @property
    def ok(self) -> bool:
        return (self.error is None and self.output_error <= self.tolerance and self.moved > 1e-3
                and self.ours_params == self.peft_params
                and (self.formula_params is None or self.formula_params == self.peft_params)
                and (self.merged_error is None or self.merged_error <= self.tolerance))

    def problem(self) -> str:
        """What failed, in words ('' if nothing)."""
        if self.error:
            return self.error
        out = []
        if self.moved <= 1e-3:
            out.append(f"the randomised peft layer still equals its base layer ({self.moved:.1e}): could not fail")
        if self.output_error > self.tolerance:
            out.append(f"outputs differ by {self.output_error:.2e} (relative; tolerance {self.tolerance:g})")
        if self.merged_error is not None and self.merged_error > self.tolerance:
            out.append(f"merged weights differ by {self.merged_error:.2e}")
        if self.ours_params != self.peft_params:
            out.append(f"trainable parameters: ours {self.ours_params}, peft {self.peft_params}")
        if self.formula_params is not None and self.formula_params != self.peft_params:
            out.append(f"the entry's formula gives {self.formula_params}, peft counts {self.peft_params}")
        return "; ".join(out)

    @property
    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.config.items()) or "defaults"
        return f"{opts} · {self.shape[1]}×{self.shape[0]} · {self.dtype}"


@dataclass
class Equality:
    """The whole matrix for one method."""

    slug: str
    peft_layer: str
    peft_version: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    def worst(self, dtype: str) -> float:
        return max((c.output_error for c in self.cases if c.dtype == dtype and c.error is None), default=math.nan)

    @property
    def shape_of_matrix(self) -> str:
        """'4 configurations × 2 shapes × 2 dtypes'."""
        n = [len({repr(getattr(c, a)) for c in self.cases}) for a in ("config", "shape", "dtype")]
        return f"{n[0]} configurations × {n[1]} layer shapes × {n[2]} dtypes"

    def worst_merged(self) -> float | None:
        errs = [c.merged_error for c in self.cases if c.merged_error is not None]
        return max(errs) if errs else None

    def failures(self) -> list[str]:
        return [f"{c.label}: {c.problem()}" for c in self.cases if not c.ok]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Equality":
        cases = [CaseResult(**{**c, "shape": tuple(c["shape"])}) for c in data["cases"]]
        return cls(data["slug"], data["peft_layer"], data["peft_version"], cases)


class OneLayer(nn.Module):
    """A model holding one layer, ``proj``: what the matrix, the speed benchmark and the tests wrap with peft."""

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def wrap(base: nn.Module, config, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """``peft.get_peft_model`` on a `OneLayer` holding ``base``: returns the peft model and its tuner layer.

    ``config`` is a peft config whose ``target_modules`` name ``"proj"``. peft's init runs under ``seed`` (the
    global generator is left as it was) and its warnings are silenced.
    """
    import peft

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = peft.get_peft_model(OneLayer(base), config)
    return model, model.base_model.model.proj


@torch.no_grad()
def randomize_peft_(model: nn.Module, generator: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Move every trainable tensor of a peft model away from its init, as `adapterspec.randomize_` does for ours."""
    for p in model.parameters():
        if p.requires_grad:
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
            p.add_(scale * max(float(p.double().pow(2).mean().sqrt()), 0.1) * noise)
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def run_case(slug: str, config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0,
             formula: str | None = None) -> CaseResult:
    """Run one cell of the matrix (see the module docstring). A converter for a method that acts on a whole model
    rather than one layer (soft prompts, prefixes) runs its own cell instead, with its ``run_case``
    (`adapterspec.interop.peft._models`)."""
    own = getattr(converters()[slug], "run_case", None)
    if own is not None:
        return own(config, tuple(shape), dtype, seed=seed, formula=formula)
    d_in, d_out = shape
    name = str(dtype).removeprefix("torch.")
    res = CaseResult(slug, config, shape, name, math.inf, None, -1, -1, TOLERANCE[dtype])
    g = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():  # peft's SHiRA builds sparse tensors and says so on every call
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        return _run_case(res, slug, config, d_in, d_out, dtype, g, seed, formula)


def _run_case(res: CaseResult, slug: str, config: dict, d_in: int, d_out: int, dtype: torch.dtype,
              g: torch.Generator, seed: int, formula: str | None) -> CaseResult:
    try:
        # peft initialises some adapters only in float32 (PiSSA's SVD): build in float32, then cast the whole model.
        base = adapter_class(slug).example_base(d_in, d_out, g, torch.float32)
        model, layer = wrap(base, peft_config(slug, target_modules=["proj"], **config), seed)
        model = model.to(dtype).eval()
        res.peft_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        randomize_peft_(model, g)
        if isinstance(base, nn.Linear):
            x = torch.randn(2, 5, d_in, generator=g, dtype=torch.float64).to(dtype)
        else:  # token ids for an embedding: what the method itself is verified on
            x = adapter_class(slug).example_inputs(base, 2, g, dtype)

        ours = from_peft(layer, method=slug).eval()
        res.ours_params = ours.num_trainable()
        if formula is not None:
            first, second = adapter_class(slug).shape_names  # ("vocab_size", "d_model") for an embedding
            names = {**hyperparameters(slug), first: d_in, second: d_out, "d_in": d_in, "d_out": d_out}
            names.update({k: getattr(ours, k) for k in names if hasattr(ours, k)})
            res.formula_params = int(evaluate_formula(formula, names))
        conv = converters()[slug]
        kwargs = conv.forward_kwargs(ours, x) if hasattr(conv, "forward_kwargs") else {}  # Poly's task ids
        y_peft, y_ours = layer(x, **kwargs), ours(x, **kwargs)
        res.output_error = _rel(y_ours, y_peft)
        res.moved = _rel(y_peft, layer.get_base_layer()(x))
        if ours.mergeable and getattr(conv, "MERGES", True):
            W_ours = ours.merged_weight().detach().clone()
            ours.merge()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                layer.merge()
            # merged against merged: peft's own merged and unmerged paths may differ in precision (C3A computes the
            # unmerged update in float32 even for float64 layers)
            err = _rel(layer(x), ours(x))
            if isinstance(base, (nn.Linear, nn.Embedding)):
                err = max(err, _rel(W_ours, layer.get_base_layer().weight))
            res.merged_error = err
    except Exception as e:  # noqa: BLE001 — reported, and the test fails on it
        res.error = f"{type(e).__name__}: {e}"
    return res


def run(slug: str, formula: str | None = None,
        dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> Equality:
    """The equality matrix of ``slug``: every case × shape × dtype of its converter.

    Args:
        slug: a method with a converter in `adapterspec.interop.peft`.
        formula: the entry's ``properties.trainable_parameters``, to check against peft's count.
    """
    import peft

    conv = converters()[slug]
    eq = Equality(slug, conv.LAYER, peft.__version__)
    for i, config in enumerate(conv.CASES):
        for shape in getattr(conv, "SHAPES", SHAPES):
            for dtype in dtypes:
                eq.cases.append(run_case(slug, config, tuple(shape), dtype, seed=i, formula=formula))
    return eq
