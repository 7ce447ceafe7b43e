"""Verification: execute every claim an entry makes against its reference module.

For each layer shape the entry names, in float64, on a seeded base layer:

1. the pseudocode compiles under the sandbox and defines ``forward``;
2. ``identity_at_init`` is checked either way; an ``init`` function in the pseudocode must produce the module's
   initial tensors (by name);
3. the module is moved to a random non-identity state (`adapterspec.randomize_`); if its output still equals
   the base layer's, the check could not fail and verification fails;
4. the pseudocode's ``forward`` equals the module's, column vector by column vector;
5. merged == unmerged (and unmerge restores the weight exactly) where ``mergeable``; only adapter tensors trainable;
   the trainable-parameter formula, the rank bound and the other declared properties hold;
6. every evidence quote occurs in its paper's text (when the texts are available).
"""

from __future__ import annotations

import ast
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from adapterspec.catalog.benchmark import Benchmark
from adapterspec.catalog.errors import EntryError
from adapterspec.catalog.loader import Catalog, LoadedEntry
from adapterspec.catalog.papers import PaperTexts
from adapterspec.catalog.sandbox import Snippet, SnippetError, call, compile_snippet
from adapterspec.registry import adapter_class, create, hyperparameters, randomize_

DTYPE = torch.float64
RTOL = 1e-9  # float64 agreement between two correct formulations of the same maths is ~1e-14; 1e-9 leaves room
N_VECTORS = 3
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
    quotes: str = "unchecked"  # "checked" | "unchecked" (paper texts not available)
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
                f"quotes {self.quotes}  {self.seconds * 1000:6.0f} ms")

    def to_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "file": self.file, "seconds": self.seconds, "quotes": self.quotes,
                "observed": self.observed, "checks": [vars(c) for c in self.checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Result":
        checks = [Check(**c) for c in data.pop("checks")]
        return cls(checks=checks, **data)


class _Fail(Exception):
    def __init__(self, check: Check) -> None:
        self.check = check


def _symbols(module: nn.Module) -> dict[str, Any]:
    out = {}
    for name, value in module.symbols().items():
        out[name] = value.detach() if isinstance(value, torch.Tensor) else value
    return out


def _bind(snippet: Snippet, function: str, symbols: dict[str, Any], item: LoadedEntry, extra: dict[str, Any]) -> dict:
    kwargs = {}
    for p in snippet.parameters(function):
        key = p if p in extra or p in symbols else GREEK.get(p, p)
        if key in extra:
            kwargs[p] = extra[key]
        elif key in symbols:
            kwargs[p] = symbols[key]
        else:
            raise _Fail(Check(
                f"pseudocode.{function}", False,
                f"parameter '{p}' is not a symbol of the reference module; available: "
                f"{', '.join(sorted([*extra, *symbols]))}", field="pseudocode", line=item.pseudocode_first_line))
    return kwargs


def _run(snippet: Snippet, function: str, kwargs: dict, item: LoadedEntry) -> Any:
    try:
        return call(snippet.functions[function], kwargs)
    except SnippetError as e:
        line = item.pseudocode_first_line + e.line - 1 if e.line else item.pseudocode_first_line
        raise _Fail(Check(f"pseudocode.{function}", False, e.message, field="pseudocode", line=line)) from None


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _tol(reference: torch.Tensor) -> float:
    return RTOL * max(1.0, float(reference.abs().max()))


def evaluate_formula(expr: str, names: dict[str, Any]) -> float:
    """Evaluate a property formula (``r * (d_in + d_out)``): names, arithmetic, ``min max int round sqrt`` only.

    Raises:
        ValueError: the expression uses anything else, or cannot be evaluated with ``names``.
    """
    try:
        tree = ast.parse(expr, mode="eval")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Lambda, ast.Subscript)) or (
                    isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                                        and node.func.id in ("min", "max", "int", "round", "sqrt"))):
                raise ValueError("only arithmetic, names and min/max/int/round/sqrt are allowed")
        scope = {"__builtins__": {"min": min, "max": max, "int": int, "round": round}, "sqrt": math.sqrt}
        return eval(compile(tree, "<formula>", "eval"), scope, dict(names))  # noqa: S307 — checked above
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot evaluate {expr!r}: {e}; names: {', '.join(sorted(names))}") from None


def _eval_formula(expr: str, names: dict[str, Any], item: LoadedEntry, fieldname: str) -> float:
    try:
        return evaluate_formula(expr, names)
    except ValueError as e:
        raise _Fail(Check(fieldname, False, str(e), field=fieldname,
                          line=item.line_of(*fieldname.split(".")))) from None


def _verify_shape(item: LoadedEntry, snippet: Snippet, hp: dict[str, Any], d_in: int, d_out: int, seed: int,
                  res: Result) -> None:
    e, props = item.entry, item.entry.properties
    slug = e.module_slug
    variant = ", ".join(f"{k}={v}" for k, v in hp.items() if k not in e.implementation.hyperparameters
                        or e.implementation.hyperparameters[k] != v)
    shape = f"{d_out}×{d_in}" + (f", {variant}" if variant else "")
    g = torch.Generator().manual_seed(seed)
    pristine = adapter_class(slug).example_base(d_in, d_out, g, DTYPE)

    def add(name: str, ok: bool, detail: str = "", error: float | None = None, field_: str | None = None) -> None:
        res.checks.append(Check(f"{name} [{shape}]", ok, detail, error, field_,
                                item.line_of(*field_.split(".")) if field_ and not ok else None))

    try:
        # A method's init may draw from torch's global generator (LoRA's kaiming A): seed it, and leave it as it was,
        # so that verification is reproducible run to run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = create(slug, copy.deepcopy(pristine), **hp)
    except Exception as exc:  # noqa: BLE001 — a bad hyperparameter is an entry error
        raise _Fail(Check(f"create [{shape}]", False, f"adapterspec.create({slug!r}, ...) failed: {exc}",
                          field="implementation.hyperparameters",
                          line=item.line_of("implementation", "hyperparameters"))) from None
    module = module.to(DTYPE)
    X = torch.randn(N_VECTORS, d_in, generator=g, dtype=DTYPE)  # rows are the test vectors x

    with torch.no_grad():
        y_base = pristine(X)
        y_init = module(X)
    err = _max_err(y_init, y_base)
    is_identity = err <= _tol(y_base)
    add("identity_at_init", is_identity == props.identity_at_init,
        f"declared {props.identity_at_init}, measured max|y − y_base| = {err:.2e} at init", None,
        "properties.identity_at_init")

    # The init function of the pseudocode, if any, must produce the module's initial tensors.
    if "init" in snippet.functions:
        names = snippet.returned_names("init")
        if not names:
            raise _Fail(Check("pseudocode.init", False, "init must end with `return name, ...` naming module symbols",
                              field="pseudocode", line=item.pseudocode_first_line))
        W = pristine.weight.detach()
        extra = {"W": W, "W0": W, "d_in": d_in, "d_out": d_out}
        kwargs = _bind(snippet, "init", {**hyperparameters(slug), **hp, **_symbols(module)}, item, extra)
        out = _run(snippet, "init", kwargs, item)
        out = out if isinstance(out, tuple) else (out,)
        if len(out) != len(names):
            raise _Fail(Check("pseudocode.init", False, f"returned {len(out)} values for names {names}",
                              field="pseudocode", line=item.pseudocode_first_line))
        syms = _symbols(module)
        worst = 0.0
        for name, value in zip(names, out):
            key = name if name in syms else GREEK.get(name, name)
            if key not in syms or not isinstance(syms[key], torch.Tensor):
                raise _Fail(Check("pseudocode.init", False, f"returns '{name}', which is not a tensor of the "
                                  f"module; tensors: {', '.join(k for k, v in syms.items() if isinstance(v, torch.Tensor))}",
                                  field="pseudocode", line=item.pseudocode_first_line))
            ref = syms[key]
            if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise _Fail(Check("pseudocode.init", False, f"'{name}' has shape {got}, the module's has "
                                  f"{tuple(ref.shape)}", field="pseudocode", line=item.pseudocode_first_line))
            err = _max_err(value.to(DTYPE), ref)
            worst = max(worst, err)
            if err > _tol(ref):
                add(f"pseudocode.init {name}", False, f"differs from the module's {key} by {err:.2e}", err,
                    "pseudocode")
                break
        else:
            add("pseudocode.init", True, f"{', '.join(names)} equal the module's init", worst)

    # Away from init: every trainable tensor randomised, so the update is not zero.
    randomize_(module, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        y = module(X)
    moved = _max_err(y, y_base)
    if moved <= 1e-6 * max(1.0, float(y_base.abs().max())):
        raise _Fail(Check(f"non-trivial state [{shape}]", False,
                          f"after randomize_ the output still equals the base layer's (max diff {moved:.1e}): "
                          "a comparison here could not fail", field="implementation"))

    kwargs_all = _symbols(module)
    worst = 0.0
    for i in range(N_VECTORS):
        x = X[i]
        kwargs = _bind(snippet, "forward", kwargs_all, item, {"x": x})
        out = _run(snippet, "forward", kwargs, item)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (d_out,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise _Fail(Check("pseudocode.forward", False, f"returned shape {got}; expected ({d_out},) = (d_out,) "
                              f"for x of shape ({d_in},)", field="pseudocode", line=item.pseudocode_first_line))
        worst = max(worst, _max_err(out.to(DTYPE), y[i]))
    add("pseudocode.forward", worst <= _tol(y), ("" if worst <= _tol(y) else "the pseudocode and the module disagree: ")
        + f"max|snippet − module| = {worst:.2e} on {N_VECTORS} vectors",
        worst, "pseudocode")

    # Declared properties.
    base_params = {id(p) for p in module.base.parameters()}
    frozen = all(not p.requires_grad for p in module.base.parameters())
    own = {n for n, p in module.named_parameters() if id(p) not in base_params}
    trainable = set(module.trainable_parameters())
    add("only adapter parameters trainable", frozen and trainable == own and bool(trainable),
        f"trainable: {', '.join(sorted(trainable)) or 'none'}; base frozen: {frozen}")

    names = {**hyperparameters(slug), **hp, "d_in": d_in, "d_out": d_out}
    expected = _eval_formula(props.trainable_parameters, names, item, "properties.trainable_parameters")
    count = module.num_trainable()
    res.observed.setdefault("trainable_parameters", {})[shape] = count
    add("trainable parameter count", count == expected,
        f"{props.trainable_parameters} = {expected:g}; module has {count}", None, "properties.trainable_parameters")

    if props.shared_across_layers:
        # A tensor shared by every layer cannot depend on any one layer's weights: built on another layer of the same
        # shape, under the same seed, it must come out identical.
        syms = _symbols(module)
        with torch.random.fork_rng(devices=[]):
            other_base = adapter_class(slug).example_base(d_in, d_out, torch.Generator().manual_seed(seed + 99), DTYPE)
            torch.manual_seed(seed)  # after building the layer, which may itself draw from the global generator
            other = _symbols(create(slug, other_base, **hp).to(DTYPE))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = _symbols(create(slug, copy.deepcopy(pristine), **hp).to(DTYPE))
        for name in props.shared_across_layers:
            if not isinstance(syms.get(name), torch.Tensor):
                add("shared across layers", False, f"'{name}' is not a tensor symbol of the module", None,
                    "properties.shared_across_layers")
                continue
            same = torch.equal(fresh[name], other[name])
            kind = "trained" if isinstance(getattr(module, name, None), torch.nn.Parameter) else "frozen"
            add(f"shared across layers: {name}", same, f"{kind}; independent of the layer's weights: {same}", None,
                "properties.shared_across_layers")

    cls = adapter_class(slug)
    add("mergeable", cls.mergeable == props.mergeable, f"declared {props.mergeable}, module says {cls.mergeable}",
        None, "properties.mergeable")
    if cls.mergeable:
        with torch.no_grad():
            W_before = module.base.weight.detach().clone()
            W_merged = module.merged_weight().detach().clone()
            dW = module.delta_weight().detach()
            module.merge()
            y_merged = module(X)
            module.unmerge()
            restored = torch.equal(module.base.weight, W_before)
        merr = _max_err(y_merged, y)
        add("merged == unmerged", merr <= _tol(y) and restored,
            f"max|merged − unmerged| = {merr:.2e}; unmerge restores the weight exactly: {restored}", merr)
        if props.rank_bound is not None:
            bound = _eval_formula(props.rank_bound, names, item, "properties.rank_bound")
            rank = int(torch.linalg.matrix_rank(dW))
            res.observed.setdefault("rank", {})[shape] = rank
            add("rank bound", rank <= bound, f"rank(ΔW) = {rank} on a random state; declared ≤ {props.rank_bound} "
                f"= {bound:g} (full rank would be {min(d_in, d_out)})", None, "properties.rank_bound")
        if props.preserves_neuron_gram is not None:
            gram0, gram = W_before @ W_before.T, W_merged @ W_merged.T
            gerr = _max_err(gram, gram0)
            holds = gerr <= _tol(gram0) * 10
            add("preserves neuron gram", holds == props.preserves_neuron_gram,
                f"declared {props.preserves_neuron_gram}; max|W'W'ᵀ − W0W0ᵀ| = {gerr:.2e}", gerr if holds else None,
                "properties.preserves_neuron_gram")
        if props.row_norms is not None:
            sym = _symbols(module).get(props.row_norms)
            if not isinstance(sym, torch.Tensor):
                add("row norms", False, f"'{props.row_norms}' is not a tensor symbol of the module", None,
                    "properties.row_norms")
            else:
                nerr = _max_err(torch.linalg.vector_norm(W_merged, dim=1), sym)
                add("row norms", nerr <= _tol(sym), f"max|‖W'_i‖ − {props.row_norms}_i| = {nerr:.2e}", nerr,
                    "properties.row_norms")


def verify_entry(item: LoadedEntry, papers: PaperTexts | None = None, benchmark: Benchmark | None = None) -> Result:
    """Verify one entry; never raises for a problem in the entry, which is reported as a failed check."""
    start = time.perf_counter()
    res = Result(slug=item.slug, file=str(item.path))
    try:
        try:
            snippet = compile_snippet(item.entry.pseudocode)
        except SnippetError as e:
            line = item.pseudocode_first_line + (e.line - 1 if e.line else 0)
            raise _Fail(Check("pseudocode", False, e.message, field="pseudocode", line=line)) from None
        if "forward" not in snippet.functions:
            raise _Fail(Check("pseudocode", False, "must define forward(x, ...); defines: "
                              f"{', '.join(snippet.functions) or 'nothing'}", field="pseudocode",
                              line=item.pseudocode_first_line))
        res.checks.append(Check("pseudocode compiles", True, f"defines {', '.join(snippet.functions)}"))
        impl = item.entry.implementation
        for hp in [impl.hyperparameters, *({**impl.hyperparameters, **v} for v in impl.variants)]:
            for k, (d_in, d_out) in enumerate(impl.shapes):
                _verify_shape(item, snippet, dict(hp), d_in, d_out, seed=1000 * k + 7, res=res)
    except _Fail as f:
        res.checks.append(f.check)
    res.checks += list(_quote_checks(item, papers, res))
    res.checks += list(_benchmark_checks(item, benchmark))
    res.seconds = time.perf_counter() - start
    return res


def _quote_checks(item: LoadedEntry, papers: PaperTexts | None, res: Result) -> Iterable[Check]:
    if papers is None or not papers.available:
        res.quotes = "unchecked"
        return
    res.quotes = "checked"
    versions = {p.arxiv: p.version for p in item.entry.papers}
    for i, ev in enumerate(item.entry.evidence):
        text = papers.text_of(ev.paper, versions.get(ev.paper))
        if text is None:
            res.quotes = "partly unchecked"
            continue
        found = papers.contains(ev.paper, ev.quote)
        yield Check(f"quote {ev.dimension} ({ev.paper})", found,
                    "found in the paper's text" if found else
                    f"not found in the text of arXiv:{ev.paper} ({papers.path(ev.paper)}) after normalising "
                    "whitespace, hyphenation and NUL bytes", field=f"evidence[{i}].quote",
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
    """Verify the named entries (all by default), in order; ``progress(result)`` is called after each."""
    wanted = list(slugs) if slugs else list(catalog.entries)
    unknown = [s for s in wanted if s not in catalog.entries]
    if unknown:
        raise KeyError(f"unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                       f"available: {', '.join(catalog.entries)}")
    results = []
    for slug in wanted:
        r = verify_entry(catalog.entries[slug], papers, benchmark)
        if progress:
            progress(r)
        results.append(r)
    return results
