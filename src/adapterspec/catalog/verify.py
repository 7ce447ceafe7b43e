"""Verification: execute every claim an entry makes against its reference module.

The pseudocode is parsed and checked statically here (`adapterspec.catalog.sandbox`), but it only ever *runs* in a
sandboxed child process (`adapterspec.catalog.worker`), on copies of the tensors, and only values come back. The
verifier builds every module, owns every tensor and makes every comparison; `verify` runs one verifier process per
entry (one per core at a time), under a deadline and a memory limit.

For each hyperparameter set and layer shape the entry names (a `Case`), in float64, on a seeded base module (the
method's ``example_base``, fed its ``example_inputs``: an ``nn.Linear`` and vectors for most methods; whatever the
method wraps, with no special case here, for the others), the checks in `CHECKS` run in order, each on freshly built
module state:

1. ``identity_at_init`` is checked either way; an ``init`` function in the pseudocode must produce the module's
   initial tensors (by name);
2. the module is moved to a random non-identity state (`adapterspec.randomize_`); if its output still equals
   the base layer's, the check could not fail and verification fails;
3. the pseudocode's ``forward`` equals the module's, input by input (a column vector ``x`` for a linear layer;
   whatever one row of ``example_inputs`` is otherwise), with an output of the module's shape; each function the
   module's `Adapter.procedure_cases` names (a training schedule, a score) returns what the module computes on its
   cases;
4. only adapter tensors are trainable, and the trainable-parameter formula holds; tensors declared shared across
   layers do not depend on the layer's weights;
5. merged == unmerged (and unmerge restores every base tensor exactly) where ``mergeable``; the rank bound and the
   other declared properties hold (those about one weight update ``ΔW`` need a method that has one).

Then every evidence quote is looked up in its paper's text (when the texts are available).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from adapterspec.adapter import Adapter
from adapterspec.catalog.benchmark import Benchmark
from adapterspec.catalog.errors import EntryError
from adapterspec.catalog.loader import Catalog, LoadedEntry
from adapterspec.catalog.papers import PaperTexts
from adapterspec.catalog.formula import FormulaError, evaluate_formula
from adapterspec.catalog.sandbox import Snippet, SnippetError, parse
from adapterspec.catalog import figures, worker
from adapterspec.catalog.worker import CALL_SECONDS
from adapterspec.registry import adapter_class, create, hyperparameters, randomize_

DTYPE = torch.float64
RTOL = 1e-9  # float64 agreement between two correct formulations of the same maths is ~1e-14; 1e-9 leaves room
N_VECTORS = 3
ENTRY_SECONDS = 30.0  # all of one entry's sandboxed calls together
VERIFIER_SECONDS = 120.0  # one entry's whole verification (about 0.1 s; minutes only for an entry built to stall)
VERIFIER_MEMORY = 2 << 30  # address space a verifier may add to what it inherits
# Paper symbols written in Greek in pseudocode, bound to the module's ASCII names.
GREEK = {"α": "alpha", "λ": "lambda", "γ": "gamma", "σ": "sigma", "Σ": "Sigma", "θ": "theta", "ε": "eps",
         "ℓ": "l", "η": "eta", "β": "beta", "ρ": "rho", "τ": "tau", "ω": "omega", "φ": "phi", "ψ": "psi"}


@dataclass
class Check:
    """One verified claim: its name, whether it held, what was measured."""

    name: str
    ok: bool
    detail: str = ""
    error: float | None = None  # max abs error where the check compares numbers
    field: str | None = None  # the entry field the check is about
    line: int | None = None  # file line of the failure, when known


@dataclass
class Result:
    """Everything verification found for one entry."""

    slug: str
    file: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    quotes: str = "unchecked"  # "checked" | "unchecked" (paper texts not available) | "partly unchecked" | "none"
    observed: dict[str, Any] = field(default_factory=dict)  # figures shown on the page (ranks, counts)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def max_error(self) -> float:
        errs = [c.error for c in self.checks if c.error is not None and c.name.startswith("pseudocode")]
        return max(errs, default=0.0)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def errors(self) -> list[EntryError]:
        return [EntryError(self.file, f"{c.name}: {c.detail}", field=c.field, line=c.line) for c in self.failures]

    def summary(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        return (f"{status} {self.slug:<12} {len(self.checks):>3} checks  max|err| {self.max_error:.1e}  "
                f"{'no quotes' if self.quotes == 'none' else 'quotes ' + self.quotes}  {self.seconds * 1000:6.0f} ms")

    def to_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "file": self.file, "seconds": self.seconds, "quotes": self.quotes,
                "observed": self.observed, "checks": [vars(c) for c in self.checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Result":
        checks = [Check(**c) for c in data.pop("checks")]
        return cls(checks=checks, **data)


class _Fail(Exception):
    """Stops the current case: a check failed in a way that makes the following checks meaningless."""

    def __init__(self, check: Check) -> None:
        self.check = check


def _symbols(module: nn.Module) -> dict[str, Any]:
    out = {}
    for name, value in module.symbols().items():
        out[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    return out


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b|, and infinity when either holds a NaN or an infinity (a NaN must never pass a ``<=`` test)."""
    if not a.numel():
        return 0.0
    diff = (a - b).abs()
    return float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf")


@torch.no_grad()
def _rank(module: nn.Module) -> int:
    """The numerical rank of ``ΔW = W' − W0``. ΔW is a difference, so it carries the rounding error of ``W0`` and
    ``W'`` (about eps · ‖W'‖), which for a small update (AdaLoRA's three small factors) exceeds matrix_rank's default
    threshold (eps · ‖ΔW‖ · max(m, n)): singular values below max(m, n) · eps · ‖W'‖ count as zero too."""
    dW, W = module.delta_weight(), module.merged_weight()
    eps = torch.finfo(dW.dtype).eps * max(dW.shape)
    return int(torch.linalg.matrix_rank(dW, atol=eps * float(torch.linalg.matrix_norm(W, ord=2)), rtol=eps))


def _tol(reference: torch.Tensor) -> float:
    return RTOL * max(1.0, float(reference.abs().max()))


@dataclass
class Case:
    """One hyperparameter set on one layer shape: what every check needs, built by this process alone."""

    item: LoadedEntry
    snippet: Snippet
    hp: dict[str, Any]
    d_in: int
    d_out: int
    seed: int
    result: Result
    pristine: nn.Module = field(init=False)
    X: torch.Tensor = field(init=False)  # X[i] is one input x (the method's example_inputs)
    y_base: torch.Tensor = field(init=False)
    expected: dict[str, Any] = field(default_factory=dict, init=False, repr=False)  # the module's side
    outputs: dict[str, Any] = field(default_factory=dict, init=False, repr=False)  # the pseudocode's side

    def __post_init__(self) -> None:
        g, cls = torch.Generator().manual_seed(self.seed), adapter_class(self.slug)
        try:
            self.pristine = cls.example_base(self.d_in, self.d_out, g, DTYPE)
            self.X = cls.example_inputs(self.pristine, N_VECTORS, g, DTYPE)
        except Exception as exc:  # noqa: BLE001 — a shape the method cannot wrap is an entry error
            raise _Fail(Check(f"layer [{self.label}]", False, str(exc), field="implementation.shapes",
                              line=self.item.line_of("implementation", "shapes"))) from None
        with torch.no_grad():
            self.y_base = self.pristine(self.X)

    @property
    def slug(self) -> str:
        return self.item.entry.module_slug

    @property
    def label(self) -> str:
        impl = self.item.entry.implementation
        variant = ", ".join(f"{k}={v}" for k, v in self.hp.items()
                            if k not in impl.hyperparameters or impl.hyperparameters[k] != v)
        first, second = adapter_class(self.slug).shape_names
        shape = (f"{self.d_out}×{self.d_in}" if (first, second) == ("d_in", "d_out")
                 else f"{first}={self.d_in}, {second}={self.d_out}")
        return shape + (f", {variant}" if variant else "")

    @property
    def names(self) -> dict[str, Any]:
        """What a property formula may use: the hyperparameters and the layer's sizes (also by the names the method
        gives them in ``shape_names``, and the further sizes its ``sizes`` reports)."""
        cls = adapter_class(self.slug)
        first, second = cls.shape_names
        return {**hyperparameters(self.slug), **self.hp, **cls.sizes(self.pristine), first: self.d_in,
                second: self.d_out, "d_in": self.d_in, "d_out": self.d_out}

    def fresh(self, base: nn.Module | None = None) -> nn.Module:
        """The module right after init, on a copy of the pristine layer (or on ``base``), in float64.

        A method's init may draw from torch's global generator (LoRA's kaiming A): it is seeded, and left as it was,
        so that verification is reproducible run to run.
        """
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(self.seed)  # CPU only: torch.manual_seed also queues CUDA work
                module = create(self.slug, base if base is not None else copy.deepcopy(self.pristine), **self.hp)
        except Exception as exc:  # noqa: BLE001 — a bad hyperparameter is an entry error
            hint = (f" (a verifier may use {VERIFIER_MEMORY >> 30} GiB: the claims are checked on small layers, so use "
                    "small hyperparameters)") if "allocate" in str(exc) else ""
            raise _Fail(Check(f"create [{self.label}]", False, f"adapterspec.create({self.slug!r}, ...) failed: "
                              f"{str(exc)[:300]}{hint}", field="implementation.hyperparameters",
                              line=self.item.line_of("implementation", "hyperparameters"))) from None
        return module.to(DTYPE)

    def randomized(self) -> nn.Module:
        """A fresh module moved away from its init, so that no comparison on it could pass by accident."""
        return randomize_(self.fresh(), torch.Generator().manual_seed(self.seed + 1))

    def check(self, name: str, ok: bool, detail: str = "", error: float | None = None,
              field_: str | None = None) -> Check:
        line = self.item.line_of(*field_.split(".")) if field_ and not ok else None
        return Check(f"{name} [{self.label}]", ok, detail, error, field_, line)

    def formula(self, fieldname: str) -> float:
        expr = getattr(self.item.entry.properties, fieldname.split(".")[-1])
        try:
            return evaluate_formula(expr, self.names)
        except FormulaError as e:
            raise _Fail(Check(fieldname, False, str(e), field=fieldname,
                              line=self.item.line_of(*fieldname.split(".")))) from None

    def declared(self, name: str) -> tuple[Any, str]:
        """The entry's claim ``name`` for this case's hyperparameters, and the field it comes from: a
        ``properties.when`` item whose condition holds here overrides the entry's own value (later items win)."""
        props = self.item.entry.properties
        value, where = getattr(props, name), f"properties.{name}"
        for i, alt in enumerate(props.when):
            try:
                holds = evaluate_formula(alt.condition, self.names)
            except FormulaError as e:
                raise _Fail(Check("properties.when", False, f"condition {alt.condition!r}: {e}",
                                  field="properties.when", line=self.item.line_of("properties", "when", i))) from None
            if holds and getattr(alt, name) is not None:
                value, where = getattr(alt, name), "properties.when"
        return value, where

    def bind(self, function: str, symbols: dict[str, Any]) -> dict[str, Any]:
        """Every parameter of the snippet's ``function``, bound to a module symbol; an unbindable one fails."""
        kwargs = {}
        for p in self.snippet.parameters(function):
            key = p if p in symbols else GREEK.get(p, p)
            if key not in symbols:
                raise _Fail(Check(
                    f"pseudocode.{function}", False,
                    f"parameter '{p}' is not a symbol of the reference module; available: {', '.join(sorted(symbols))}",
                    field="pseudocode", line=self.item.pseudocode_first_line))
            kwargs[p] = symbols[key]
        return kwargs

    def snippet_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The pseudocode calls this case needs, and (kept here) what the module says, to compare with later.

        ``init`` (if the snippet defines it) gets the symbols of a fresh module; ``forward`` gets each input ``X[i]``
        and the symbols of a randomized module. The worker receives copies; this process keeps the originals.
        """
        calls: list[tuple[str, dict[str, Any]]] = []
        if "init" in self.snippet.functions:
            self.expected["init_symbols"] = _symbols(self.fresh())
            W = getattr(self.pristine, "weight", None)  # the pretrained weight, where the base has one
            weight = {"W": W.detach().clone(), "W0": W.detach().clone()} if isinstance(W, torch.Tensor) else {}
            calls.append(("init", self.bind("init", {**hyperparameters(self.slug), **self.hp,
                                                      **self.expected["init_symbols"], **weight,
                                                      "d_in": self.d_in, "d_out": self.d_out})))
        module = self.randomized()
        with torch.no_grad():
            self.expected["y"] = module(self.X)
        symbols = _symbols(module)
        calls += [("forward", self.bind("forward", {**symbols, "x": self.X[i].clone()})) for i in range(N_VECTORS)]
        return calls + self.procedure_calls(symbols)

    def procedure_calls(self, symbols: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The module's `Adapter.procedure_cases` (on a randomized module): each a call of a named pseudocode
        function, its parameters bound to the case's inputs and then to the module's symbols. The expected values
        stay here; a function the pseudocode does not define is not called, and `check_procedures` reports it."""
        self.expected["procedures"] = []
        if adapter_class(self.slug).procedure_cases is Adapter.procedure_cases:
            return []  # no procedure to check: skip building another module
        try:
            cases = self.randomized().procedure_cases(torch.Generator().manual_seed(self.seed + 2))
        except Exception as exc:  # noqa: BLE001 — a hyperparameter the procedure cannot use is an entry error
            raise _Fail(Check(f"procedure_cases [{self.label}]", False, f"the module could not build its procedure "
                              f"cases: {type(exc).__name__}: {str(exc)[:300]}", field="implementation.hyperparameters",
                              line=self.item.line_of("implementation", "hyperparameters"))) from None
        self.expected["procedures"] = [(function, expected, _call_label(function, kwargs))
                                       for function, kwargs, expected in cases]
        return [(function, self.bind(function, {**symbols, **kwargs})) for function, kwargs, _ in cases
                if function in self.snippet.functions]

    def receive(self, values: list[Any]) -> None:
        """The sandbox's answers to `snippet_calls`, in the same order."""
        init = "init" in self.snippet.functions
        self.outputs["init"] = values[0] if init else None
        self.outputs["forward"] = values[int(init):int(init) + N_VECTORS]
        rest = iter(values[int(init) + N_VECTORS:])
        self.outputs["procedures"] = [next(rest) if function in self.snippet.functions else None
                                      for function, _, _ in self.expected["procedures"]]

    def fail(self, function: str, message: str) -> _Fail:
        return _Fail(Check(f"pseudocode.{function}", False, message, field="pseudocode",
                           line=self.item.pseudocode_first_line))


# -- the checks: one small function per claim, run in this order on every case -----------------------------------------
def check_identity_at_init(case: Case) -> list[Check]:
    declared, where = case.declared("identity_at_init")
    with torch.no_grad():
        y = case.fresh()(case.X)
    if y.shape != case.y_base.shape:
        raise _Fail(Check(f"output shape [{case.label}]", False, f"the module returns {tuple(y.shape)} where its base "
                          f"returns {tuple(case.y_base.shape)} for the same inputs: an adapter must return what its "
                          "base returns (drop a soft prompt's positions, say)", field="implementation"))
    err = _max_err(y, case.y_base)
    measured = err <= _tol(case.y_base)
    return [case.check("identity_at_init", measured == declared,
                       f"declared {declared}, measured max|y − y_base| = {err:.2e} at init", None, where)]


def check_init(case: Case) -> list[Check]:
    """The pseudocode's ``init`` returns, by name, the module's initial tensors."""
    if "init" not in case.snippet.functions:
        return []
    names = case.snippet.returned_names("init")
    if not names:
        raise case.fail("init", "init must end with `return name, ...` naming module symbols")
    out = case.outputs["init"] if isinstance(case.outputs["init"], tuple) else (case.outputs["init"],)
    if len(out) != len(names):
        raise case.fail("init", f"returned {len(out)} values for names {names}")
    own = case.expected["init_symbols"]
    worst = 0.0
    for name, value in zip(names, out):
        key = name if name in own else GREEK.get(name, name)
        ref = own.get(key)
        if not isinstance(ref, torch.Tensor):
            tensors = ", ".join(k for k, v in own.items() if isinstance(v, torch.Tensor))
            raise case.fail("init", f"returns '{name}', which is not a tensor of the module; tensors: {tensors}")
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise case.fail("init", f"'{name}' has shape {got}, the module's has {tuple(ref.shape)}")
        err = _max_err(value.to(DTYPE), ref)
        if not err <= _tol(ref):
            return [case.check(f"pseudocode.init {name}", False, f"differs from the module's {key} by {err:.2e}", err,
                               "pseudocode")]
        worst = max(worst, err)
    return [case.check("pseudocode.init", True, f"{', '.join(names)} equal the module's init", worst)]


def check_non_trivial(case: Case) -> list[Check]:
    """After `randomize_` the output must differ from the base layer's, or no later comparison could fail."""
    with torch.no_grad():
        moved = _max_err(case.randomized()(case.X), case.y_base)
    if not moved > 1e-6 * max(1.0, float(case.y_base.abs().max())):
        raise _Fail(Check(f"non-trivial state [{case.label}]", False,
                          f"after randomize_ the output still equals the base layer's (max diff {moved:.1e}): "
                          "a comparison here could not fail", field="implementation"))
    return []


def check_forward(case: Case) -> list[Check]:
    """The pseudocode's ``forward`` equals the module's, on each input, in a randomized state; the output of one input
    has the shape the module gives it (``(d_out,)`` for a linear layer)."""
    y = case.expected["y"]
    worst = 0.0
    for i, out in enumerate(case.outputs["forward"]):
        want = tuple(y[i].shape)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            named = f" = (d_out,)" if want == (case.d_out,) else ""
            raise case.fail("forward", f"returned shape {got}; expected {want}{named} for x of shape "
                            f"{tuple(case.X[i].shape)}")
        worst = max(worst, _max_err(out.to(DTYPE), y[i]))
    ok = worst <= _tol(y)
    noun = "vectors" if case.X.dim() == 2 and case.X.is_floating_point() else "inputs"
    return [case.check("pseudocode.forward", ok, ("" if ok else "the pseudocode and the module disagree: ")
                       + f"max|snippet − module| = {worst:.2e} on {N_VECTORS} {noun}", worst, "pseudocode")]


def _difference(value: Any, expected: Any) -> tuple[float, str]:
    """max|value − expected| over a value the module computed (a tensor, a number, a bool, or a list, tuple or dict
    of these), with a reason where the structure differs (then the error is infinite). Tensors and numbers are
    compared in float64, so a mask may come back as booleans or as 0/1 numbers."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(expected):
            got = f"{len(value)} values" if isinstance(value, (list, tuple)) else type(value).__name__
            return float("inf"), f"returned {got}, expected {len(expected)} values"
        worst = (0.0, "")
        for v, e in zip(value, expected):
            worst = max(worst, _difference(v, e), key=lambda d: (bool(d[1]), d[0]))  # a failure first
        return worst
    if isinstance(expected, dict):
        if not isinstance(value, dict) or set(value) != set(expected):
            got = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
            return float("inf"), f"returned {got}, expected keys {', '.join(sorted(expected))}"
        return _difference([value[k] for k in sorted(expected)], [expected[k] for k in sorted(expected)])
    if isinstance(value, bool | int | float):
        value = torch.tensor(float(value), dtype=DTYPE)
    if not isinstance(value, torch.Tensor):
        return float("inf"), f"returned a {type(value).__name__}, expected a number or tensor"
    ref = torch.as_tensor(expected).to(DTYPE)
    if tuple(value.shape) != tuple(ref.shape):
        return float("inf"), f"returned shape {tuple(value.shape)}, expected {tuple(ref.shape)}"
    if value.is_complex() != ref.is_complex():
        return float("inf"), "returned a complex value where a real one was expected, or the reverse"
    err = _max_err(value.to(ref.dtype), ref)
    return err, "" if err <= _tol(ref) else f"differs from the module's value by {err:.2e}"


def _call_label(function: str, kwargs: dict[str, Any]) -> str:
    """``budget(t=4, b_0=216, ...)``: the call, with its numbers shown and its tensors elided."""
    shown = [f"{k}={v!r}" if isinstance(v, bool | int | float) else f"{k}=…" for k, v in kwargs.items()]
    return f"{function}({', '.join(shown)})"


def check_procedures(case: Case) -> list[Check]:
    """Each pseudocode function the module's `Adapter.procedure_cases` names (a schedule, a score, a regulariser)
    returns, on every case it gives, what the module computes (float64, the same tolerance as the forward)."""
    by_function: dict[str, list[tuple[float, str]]] = {}
    for (function, expected, label), value in zip(case.expected["procedures"], case.outputs["procedures"]):
        if function not in case.snippet.functions:
            by_function.setdefault(function, []).append((float("inf"), "missing"))
            continue
        err, why = _difference(value, expected)
        by_function.setdefault(function, []).append((err, f"{label}: {why}" if why else ""))
    checks = []
    for function, results in by_function.items():
        if results[0][1] == "missing":
            checks.append(case.check(f"pseudocode.{function}", False, f"the reference module's training procedure "
                                     f"is verified through a pseudocode function {function}(...), which the "
                                     f"pseudocode does not define", None, "pseudocode"))
            continue
        bad = [(i, why) for i, (err, why) in enumerate(results) if why]
        worst = max(err for err, _ in results)
        detail = (f"equals the module on {len(results)} case{'s' if len(results) > 1 else ''}, max|err| {worst:.2e}"
                  if not bad else f"{bad[0][1]} (case {bad[0][0] + 1} of {len(results)})")
        checks.append(case.check(f"pseudocode.{function}", not bad, detail, None if bad else worst, "pseudocode"))
    if by_function:
        case.result.observed.setdefault("procedures", {}).update({f: len(r) for f, r in by_function.items()})
    return checks


def check_only_adapter_trainable(case: Case) -> list[Check]:
    module = case.randomized()
    base_params = {id(p) for p in module.base.parameters()}
    frozen = all(not p.requires_grad for p in module.base.parameters())
    own = {n for n, p in module.named_parameters() if id(p) not in base_params}
    trainable = set(module.trainable_parameters())
    return [case.check("only adapter parameters trainable", frozen and trainable == own and bool(trainable),
                       f"trainable: {', '.join(sorted(trainable)) or 'none'}; base frozen: {frozen}")]


def check_parameter_count(case: Case) -> list[Check]:
    expected = case.formula("properties.trainable_parameters")
    count = case.fresh().num_trainable()
    case.result.observed.setdefault("trainable_parameters", {})[case.label] = count
    return [case.check("trainable parameter count", count == expected,
                       f"{case.item.entry.properties.trainable_parameters} = {expected:g}; module has {count}", None,
                       "properties.trainable_parameters")]


def check_shared_across_layers(case: Case) -> list[Check]:
    """A tensor shared by every layer cannot depend on any one layer's weights: built on another layer of the same
    shape, under the same seed, it must come out identical. A constant tensor (all zeros, say) would pass that test
    whatever it is, so it is refused as a check that could not fail.

    What a single module cannot show is that a model really shares the tensor: a per-layer tensor drawn at random,
    independently of the weights (LoRA's A), passes too. The claim is read as "can be shared", and said so."""
    shared = case.item.entry.properties.shared_across_layers
    if not shared:
        return []
    mine = _symbols(case.fresh())
    with torch.random.fork_rng(devices=[]):
        other_base = adapter_class(case.slug).example_base(case.d_in, case.d_out,
                                                           torch.Generator().manual_seed(case.seed + 99), DTYPE)
    other = _symbols(case.fresh(other_base))
    checks = []
    for name in shared:
        if not isinstance(mine.get(name), torch.Tensor):
            checks.append(case.check("shared across layers", False, f"'{name}' is not a tensor symbol of the module",
                                     None, "properties.shared_across_layers"))
            continue
        flat = mine[name].flatten()
        if flat.numel() < 2 or bool((flat == flat[0]).all()):
            checks.append(case.check(f"shared across layers: {name}", False, f"'{name}' is constant at init, so "
                                     "building it on another layer could not come out different: nothing is checked",
                                     None, "properties.shared_across_layers"))
            continue
        same = torch.equal(mine[name], other[name])
        kind = "trained" if isinstance(getattr(case.fresh(), name, None), torch.nn.Parameter) else "frozen"
        checks.append(case.check(f"shared across layers: {name}", same,
                                 f"{kind}; independent of the layer's weights: {same}", None,
                                 "properties.shared_across_layers"))
    return checks


def check_formulas_at_other_shapes(case: Case) -> list[Check]:
    """The parameter count and the rank bound are formulas of the layer's shape, and the entry chooses the shapes it
    is verified on: a formula fitted to those shapes (``7 * d_in`` where ``d_out = 3/4 d_in``; a rank bound of 1 on
    layers with one input) would pass there. Both are checked again, for the first shape of each hyperparameter set,
    at shapes the verifier picks (each size doubled, and both), wherever the method accepts them."""
    impl = case.item.entry.implementation
    if (case.d_in, case.d_out) != tuple(impl.shapes[0]):
        return []
    props, checks, tried = case.item.entry.properties, [], 0
    for d_in, d_out in ((2 * case.d_in, case.d_out), (case.d_in, 2 * case.d_out), (2 * case.d_in, 2 * case.d_out)):
        try:
            other = Case(case.item, case.snippet, case.hp, d_in, d_out, seed=case.seed + 5, result=case.result)
            module = other.fresh()
        except _Fail:
            continue  # a shape this method cannot wrap (LN tuning needs d_in = d_out)
        tried += 1
        expected, count = other.formula("properties.trainable_parameters"), module.num_trainable()
        checks.append(other.check("trainable parameter count", count == expected,
                                  f"at a shape the verifier chose: {props.trainable_parameters} = {expected:g}; "
                                  f"module has {count}", None, "properties.trainable_parameters"))
        if props.rank_bound is not None and adapter_class(case.slug).has_delta_weight():
            bound = other.formula("properties.rank_bound")
            rank = _rank(other.randomized())
            checks.append(other.check("rank bound", rank <= bound, f"at a shape the verifier chose: rank(ΔW) = {rank};"
                                      f" declared ≤ {props.rank_bound} = {bound:g}", None, "properties.rank_bound"))
    if not tried:
        checks.append(case.check("formulas at other shapes", True, "the method accepts none of the doubled shapes; "
                                 "the formulas were checked at the entry's shapes only"))
    return checks


def check_mergeable(case: Case) -> list[Check]:
    declared, cls = case.item.entry.properties.mergeable, adapter_class(case.slug)
    return [case.check("mergeable", cls.mergeable == declared, f"declared {declared}, module says {cls.mergeable}",
                       None, "properties.mergeable")]


def check_merge_roundtrip(case: Case) -> list[Check]:
    """Merged output == unmerged output, and unmerge restores every tensor of the base bit for bit (one weight, or
    all those a method's ``adapted_weights`` changes)."""
    if not adapter_class(case.slug).mergeable:
        return []
    module = case.randomized()
    with torch.no_grad():
        y = module(case.X)
        before = {k: v.detach().clone() for k, v in module.base.state_dict().items()}
        module.merge()
        y_merged = module(case.X)
        module.unmerge()
        after = module.base.state_dict()
        restored = all(torch.equal(after[k], v) for k, v in before.items())
    err = _max_err(y_merged, y)
    return [case.check("merged == unmerged", err <= _tol(y) and restored,
                       f"max|merged − unmerged| = {err:.2e}; unmerge restores the weight exactly: {restored}", err)]


def _without_delta(case: Case, name: str, field_: str) -> list[Check] | None:
    """A failed check when a property about the one weight update ``ΔW`` is declared for a method without one (not
    mergeable, or changing several weights); None when the property can be checked."""
    cls = adapter_class(case.slug)
    if cls.has_delta_weight():
        return None
    why = "is not mergeable" if not cls.mergeable else "changes several weights (adapted_weights)"
    return [case.check(name, False, f"declared, but {cls.__name__} {why}: there is no single weight update ΔW to "
                       f"check it on; remove {field_} from the entry", None, field_)]


def check_rank_bound(case: Case) -> list[Check]:
    if case.item.entry.properties.rank_bound is None:
        return []
    if (no := _without_delta(case, "rank bound", "properties.rank_bound")) is not None:
        return no
    bound = case.formula("properties.rank_bound")
    rank = _rank(case.randomized())
    case.result.observed.setdefault("rank", {})[case.label] = rank
    return [case.check("rank bound", rank <= bound, f"rank(ΔW) = {rank} on a random state; declared ≤ "
                       f"{case.item.entry.properties.rank_bound} = {bound:g} (full rank would be "
                       f"{min(case.d_in, case.d_out)})", None, "properties.rank_bound")]


def check_neuron_gram(case: Case) -> list[Check]:
    declared, where = case.declared("preserves_neuron_gram")
    if declared is None:
        return []
    if (no := _without_delta(case, "preserves neuron gram", "properties.preserves_neuron_gram")) is not None:
        return no
    module = case.randomized()
    with torch.no_grad():
        # the pretrained weight, not base.weight: PiSSA and PSOFT keep only a residual there
        W0, W = case.pristine.weight.detach(), module.merged_weight().detach()
        gram0 = W0 @ W0.T
        err = _max_err(W @ W.T, gram0)
    holds = err <= _tol(gram0) * 10
    return [case.check("preserves neuron gram", holds == declared,
                       f"declared {declared}; max|W'W'ᵀ − W0W0ᵀ| = {err:.2e}", err if holds else None, where)]


def check_input_gram(case: Case) -> list[Check]:
    """``W'ᵀW' == W0ᵀW0``: what an output-side rotation keeps (checked either way, like the neuron Gram matrix)."""
    declared, where = case.declared("preserves_input_gram")
    if declared is None:
        return []
    if (no := _without_delta(case, "preserves input gram", "properties.preserves_input_gram")) is not None:
        return no
    module = case.randomized()
    with torch.no_grad():
        # the pretrained weight, not base.weight: PiSSA and PSOFT keep only a residual there
        W0, W = case.pristine.weight.detach(), module.merged_weight().detach()
        gram0 = W0.T @ W0
        err = _max_err(W.T @ W, gram0)
    holds = err <= _tol(gram0) * 10
    return [case.check("preserves input gram", holds == declared,
                       f"declared {declared}; max|W'ᵀW' − W0ᵀW0| = {err:.2e}", err if holds else None, where)]


def check_orthogonal(case: Case) -> list[Check]:
    """Each declared rotation or reflection ``R`` (a matrix or a stack of blocks) satisfies ``RᵀR = RRᵀ = I`` in
    float64 in a randomized state, and its blocks tile the side it is declared to act on (``d_in`` for the input
    side, ``d_out`` for the output side; the entry's shapes are non-square, so a wrong side fails). What each side
    keeps is checked by ``preserves_neuron_gram`` (input) and ``preserves_input_gram`` (output)."""
    declared, where = case.declared("orthogonal")
    if not declared:
        return []
    symbols = _symbols(case.randomized())
    checks = []
    for i, o in enumerate(declared):
        R = symbols.get(o.symbol)
        if not isinstance(R, torch.Tensor) or R.dim() < 2 or R.shape[-1] != R.shape[-2]:
            got = tuple(R.shape) if isinstance(R, torch.Tensor) else type(R).__name__
            checks.append(case.check(f"orthogonal {o.symbol}", False, f"'{o.symbol}' must be a square matrix or a "
                                     f"stack of square blocks (..., b, b) symbol of the module; got {got}", None,
                                     where))
            continue
        R = R.to(DTYPE)
        eye = torch.eye(R.shape[-1], dtype=DTYPE)
        err = max(_max_err(R.mT @ R, eye.expand_as(R)), _max_err(R @ R.mT, eye.expand_as(R)))
        if o.side == "subspace":  # a rotation inside a smaller subspace (PSOFT's r × r): it must tile `dim`
            try:
                size, what = int(evaluate_formula(o.dim, case.names)), f"the subspace has dim = {o.dim} ="
            except FormulaError as e:
                checks.append(case.check(f"orthogonal {o.symbol}", False, str(e), None, where))
                continue
        else:
            size = case.d_in if o.side == "input" else case.d_out
            what = f"the {o.side} side has"
        blocks = R.shape[-1] * (R.numel() // (R.shape[-1] ** 2))
        tiles = blocks == size
        ok = err <= 1e-12 and tiles
        detail = f"max|RᵀR − I| = {err:.2e} (float64)"
        if not tiles:
            detail += f"; its blocks cover {blocks} coordinates, but {what} {size}"
            if o.side != "subspace":
                detail += f" (d_{'in' if o.side == 'input' else 'out'})"
        checks.append(case.check(f"orthogonal {o.symbol} ({o.side} side)", ok, detail, err if ok else None, where))
    return checks


def check_semi_orthogonal(case: Case) -> list[Check]:
    """Each declared ``R`` (``(r, d)`` with ``r ≤ d``, or a stack ``(..., r, d)``) has orthonormal rows, ``R Rᵀ = I``,
    in float64 in a randomized state: what an orthonormal basis of a subspace, as opposed to a rotation, satisfies."""
    declared, where = case.declared("semi_orthogonal")
    if not declared:
        return []
    symbols = _symbols(case.randomized())
    checks = []
    for name in declared:
        R = symbols.get(name)
        if not isinstance(R, torch.Tensor) or R.dim() < 2 or R.shape[-2] > R.shape[-1]:
            got = tuple(R.shape) if isinstance(R, torch.Tensor) else type(R).__name__
            checks.append(case.check(f"orthonormal rows {name}", False, f"'{name}' must be a symbol of the module "
                                     f"holding an (r, d) matrix with r ≤ d, or a stack (..., r, d); got {got}", None,
                                     where))
            continue
        R = R.to(DTYPE)
        err = _max_err(R @ R.mT, torch.eye(R.shape[-2], dtype=DTYPE).expand(*R.shape[:-1], R.shape[-2]))
        ok = err <= 1e-12
        checks.append(case.check(f"orthonormal rows {name}", ok, f"max|R Rᵀ − I| = {err:.2e} (float64), R of shape "
                                 f"{tuple(R.shape)}", err if ok else None, where))
    return checks


def check_row_norms(case: Case) -> list[Check]:
    name = case.item.entry.properties.row_norms
    if name is None:
        return []
    if (no := _without_delta(case, "row norms", "properties.row_norms")) is not None:
        return no
    module = case.randomized()
    sym = _symbols(module).get(name)
    if not isinstance(sym, torch.Tensor):
        return [case.check("row norms", False, f"'{name}' is not a tensor symbol of the module", None,
                           "properties.row_norms")]
    with torch.no_grad():
        err = _max_err(torch.linalg.vector_norm(module.merged_weight(), dim=1), sym)
    return [case.check("row norms", err <= _tol(sym), f"max|‖W'_i‖ − {name}_i| = {err:.2e}", err,
                       "properties.row_norms")]


def check_svd_subspace(case: Case) -> list[Check]:
    """``ΔW = W' − W0`` lies where an SVD-aligned method says it does: its column space inside the span of ``W0``'s
    top-r left singular vectors (side ``left``), its row space inside that of the top-r right ones (``right``), or
    both. ``W0`` is the pretrained weight, the pristine layer's (PiSSA-style methods rewrite ``base.weight``). A side
    of dimension ≤ r holds whatever ΔW is; when every declared side is like that at a shape, the claim says nothing
    there and fails, asking for a shape or hyperparameters where it could."""
    claim = case.item.entry.properties.svd_subspace
    if claim is None or not adapter_class(case.slug).mergeable:
        return []
    where = "properties.svd_subspace"
    try:
        r = int(evaluate_formula(claim.rank, case.names))
    except FormulaError as e:
        raise _Fail(Check(f"{where}.rank", False, str(e), field=f"{where}.rank",
                          line=case.item.line_of("properties", "svd_subspace", "rank"))) from None
    W0 = case.pristine.weight.detach().to(DTYPE)
    with torch.no_grad():
        dW = case.randomized().merged_weight().detach() - W0  # (d_out, d_in)
    U, _, Vh = torch.linalg.svd(W0, full_matrices=False)
    U_r, V_r = U[:, :max(r, 0)], Vh[:max(r, 0)].T  # (d_out, r), (d_in, r)
    sides = ("left", "right") if claim.side == "both" else (claim.side,)
    parts, worst, informative = [], 0.0, False
    for side in sides:
        if side == "left":
            residual, size = dW - U_r @ (U_r.T @ dW), case.d_out  # the part of ΔW's columns outside span(U_r)
        else:
            residual, size = dW - (dW @ V_r) @ V_r.T, case.d_in  # the part of ΔW's rows outside span(V_r)
        err = _max_err(residual, torch.zeros_like(residual))
        worst, informative = max(worst, err), informative or r < size
        parts.append(f"{side}: max|ΔW outside span({'U' if side == 'left' else 'V'}_r)| = {err:.2e}"
                     + ("" if r < size else f" (vacuous: r = {r} ≥ d_{'out' if side == 'left' else 'in'} = {size})"))
    holds = worst <= _tol(dW) * 10
    detail = f"r = {claim.rank} = {r}; " + "; ".join(parts)
    if not informative:
        detail += "; at this shape the claim could not fail: verify on shapes where r < the side's dimension"
    return [case.check(f"svd subspace ({claim.side})", holds and informative, detail, worst if holds else None,
                       where)]


CHECKS: tuple[Callable[[Case], list[Check]], ...] = (
    check_identity_at_init, check_init, check_non_trivial, check_forward, check_procedures,
    check_only_adapter_trainable,
    check_parameter_count, check_formulas_at_other_shapes, check_shared_across_layers, check_mergeable,
    check_merge_roundtrip, check_rank_bound,
    check_neuron_gram, check_input_gram, check_orthogonal, check_svd_subspace, check_semi_orthogonal,
    check_row_norms,
)


def verify_entry(item: LoadedEntry, papers: PaperTexts | None = None, benchmark: Benchmark | None = None) -> Result:
    """Verify one entry; never raises for a problem in the entry, which is reported as a failed check."""
    start = time.perf_counter()
    res = Result(slug=item.slug, file=str(item.path))
    try:
        try:
            snippet = parse(item.entry.pseudocode)
        except SnippetError as e:
            line = item.pseudocode_first_line + (e.line - 1 if e.line else 0)
            raise _Fail(Check("pseudocode", False, e.message, field="pseudocode", line=line)) from None
        if "forward" not in snippet.functions:
            raise _Fail(Check("pseudocode", False, "must define forward(x, ...); defines: "
                              f"{', '.join(snippet.functions) or 'nothing'}", field="pseudocode",
                              line=item.pseudocode_first_line))
        res.checks.append(Check("pseudocode parses", True, f"defines {', '.join(snippet.functions)}"))
        impl = item.entry.implementation
        cases = [Case(item, snippet, dict(hp), d_in, d_out, seed=1000 * k + 7, result=res)
                 for hp in [impl.hyperparameters, *({**impl.hyperparameters, **v} for v in impl.variants)]
                 for k, (d_in, d_out) in enumerate(impl.shapes)]
        _run_snippets(item, snippet, cases)
        for case in cases:
            for check in CHECKS:
                res.checks += check(case)
    except _Fail as f:
        res.checks.append(f.check)
    res.checks += list(_quote_checks(item, papers, res))
    res.checks += list(_benchmark_checks(item, benchmark))
    if res.ok:  # the page's figure, measured here so that it is bounded and cached like everything else
        impl = item.entry.implementation
        res.observed["figure"] = figures.delta_data(item.entry.module_slug, dict(impl.hyperparameters),
                                                    tuple(impl.shapes[-1]))
    res.seconds = time.perf_counter() - start
    return res


def _run_snippets(item: LoadedEntry, snippet: Snippet, cases: list[Case]) -> None:
    """Every pseudocode call of every case of the entry, in one sandboxed request (each call on fresh copies, under
    its own deadline; the request under the entry's)."""
    calls = [case.snippet_calls() for case in cases]
    try:
        values = worker.run(snippet.source, [c for batch in calls for c in batch], seconds=CALL_SECONDS,
                            total_seconds=ENTRY_SECONDS)
    except SnippetError as e:
        line = item.pseudocode_first_line + (e.line - 1 if e.line else 0)
        raise _Fail(Check("pseudocode", False, e.message, field="pseudocode", line=line)) from None
    for case, batch in zip(cases, calls):
        case.receive(values[:len(batch)])
        values = values[len(batch):]


def _quote_checks(item: LoadedEntry, papers: PaperTexts | None, res: Result) -> Iterable[Check]:
    """Each quote, looked up in the saved text of its paper, when that text is the one the bibliography records."""
    if not item.entry.evidence:
        res.quotes = "none"  # nothing quoted: not "checked"
        return
    if papers is None or not papers.available:
        res.quotes = "unchecked"
        return
    res.quotes = "checked"
    for i, ev in enumerate(item.entry.evidence):
        record = item.papers.get(ev.paper)
        if record is None or papers.find(record)[0] is None:
            res.quotes = "partly unchecked"
            if record is not None:
                res.observed.setdefault("unchecked_quotes", {})[str(i)] = papers.find(record)[1]
            continue
        found = papers.contains(record, ev.quote)
        path, _ = papers.find(record)
        yield Check(f"quote {ev.dimension} ({ev.paper})", found,
                    "found in the paper's text" if found else
                    f"not found in the text of arXiv:{record.arxiv} ({path}) after normalising whitespace, "
                    "hyphenation and NUL bytes", field=f"evidence[{i}].quote",
                    line=None if found else item.line_of("evidence", i, "quote"))


def _benchmark_checks(item: LoadedEntry, benchmark: Benchmark | None) -> Iterable[Check]:
    if benchmark is None or not benchmark.available:
        return
    names = benchmark.names()
    for i, name in enumerate(item.entry.benchmark):
        ok = name in names
        prefix = name.split("--")[0]
        similar = [n for n in names if n.startswith(prefix)] or names
        yield Check(f"benchmark run {name}", ok, "result file found" if ok else
                    f"no result file {name}.json in {benchmark.folder}; similar: {', '.join(similar[:8])}",
                    field=f"benchmark[{i}]", line=None if ok else item.line_of("benchmark", i))


def verify(catalog: Catalog, slugs: Iterable[str] | None = None, papers: PaperTexts | None = None,
           progress=None, benchmark: Benchmark | None = None) -> list[Result]:
    """Verify the named entries (all by default); results and ``progress(result)`` calls come in order."""
    wanted = list(slugs) if slugs else list(catalog.entries)
    unknown = [s for s in wanted if s not in catalog.entries]
    if unknown:
        raise KeyError(f"unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                       f"available: {', '.join(catalog.entries)}")
    return verify_entries([catalog.entries[s] for s in wanted], papers, benchmark, progress)


def verify_entries(items: list[LoadedEntry], papers: PaperTexts | None = None, benchmark: Benchmark | None = None,
                   progress: Callable[[Result], None] | None = None) -> list[Result]:
    """`verify_entry` for each item, each in a verifier process of its own (one per core at a time), under
    `VERIFIER_SECONDS` and `VERIFIER_MEMORY`; an entry that runs past them fails, saying so. Results, and
    ``progress(result)`` calls, come in order."""
    worker.warm_up()  # inherited by every verifier, so that none of them repeats it
    results: list[Result | None] = [None] * len(items)
    shown = 0

    def on_result(i: int, ok: bool, value: Any) -> None:
        nonlocal shown
        results[i] = Result.from_json(value) if ok else _crashed(items[i], value)
        while progress and shown < len(items) and results[shown] is not None:
            progress(results[shown])
            shown += 1

    worker.map_forked(lambda item: verify_entry(item, papers, benchmark).to_json(), items,
                      seconds=VERIFIER_SECONDS, memory=VERIFIER_MEMORY, on_result=on_result)
    return results  # type: ignore[return-value]


def _crashed(item: LoadedEntry, why: str) -> Result:
    last = str(why).strip().splitlines()[-1] if str(why).strip() else "no reason given"
    return Result(slug=item.slug, file=str(item.path), checks=[Check(
        "verification", False, f"the verifier process failed: {last}. Are the hyperparameters or shapes far too "
        "large for a check on small layers?", field="implementation", line=item.line_of("implementation"))])
