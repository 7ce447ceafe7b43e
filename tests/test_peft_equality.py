"""Every reference module equals peft's layer for the same weights (the matrix of `adapterspec.interop.equality`).

Each converter's cases run over its layer shapes in float32 and float64, with every trainable peft tensor randomised
away from its init; outputs, merged weights and trainable-parameter counts (ours, peft's, and the entry's formula) must
agree. The same matrix runs in the site build, which prints the figures on each method page.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop import equality  # noqa: E402
from adapterspec.interop.peft import PeftConversionError, converters, from_peft  # noqa: E402
from adapterspec.methods.lora import LoRA  # noqa: E402
from adapterspec.methods.pissa import PiSSA  # noqa: E402

MATRIX = [(slug, i) for slug, conv in converters().items() for i in range(len(conv.CASES))]


def _ids(p):
    slug, i = p
    opts = ",".join(f"{k}={v}" for k, v in converters()[slug].CASES[i].items())
    return f"{slug}[{opts or 'defaults'}]"


@pytest.mark.parametrize("slug_case", MATRIX, ids=[_ids(p) for p in MATRIX])
def test_module_equals_peft_layer(slug_case, catalog):
    slug, i = slug_case
    conv = converters()[slug]
    entry = {it.entry.module_slug: it.entry for it in catalog}[slug]
    for shape in getattr(conv, "SHAPES", equality.SHAPES):
        for dtype in (torch.float32, torch.float64):
            res = equality.run_case(slug, conv.CASES[i], tuple(shape), dtype, seed=i,
                                    formula=entry.properties.trainable_parameters)
            assert res.ok, f"{res.label}: {res.problem()}"


def test_every_method_peft_implements_has_a_converter(catalog):
    for item in catalog:
        e = item.entry
        if e.code.peft:
            assert e.module_slug in converters(), f"{item.path.name}: peft has {e.code.peft} but there is no converter"
            assert converters()[e.module_slug].LAYER == e.code.peft, \
                f"{item.path.name}: code.peft and the converter's LAYER differ"


def test_each_converter_checks_several_configurations():
    for slug, conv in converters().items():
        # one case only where peft's config has no option that changes the layer (LN tuning)
        assert len(conv.CASES) >= 2 or conv.CASES == [{}], f"{slug}: the matrix needs the method's main options"


def test_a_wrong_conversion_is_caught(monkeypatch):
    """The matrix can fail: a converter that is off by 0.1% in one tensor is reported."""
    lora = converters()["lora"]
    real = lora.convert

    def off(layer, base, name):
        module = real(layer, base, name)
        with torch.no_grad():
            module.B.mul_(1.001)
        return module

    monkeypatch.setattr(lora, "convert", off)
    res = equality.run_case("lora", lora.CASES[0], (24, 40), torch.float64)
    assert not res.ok and "outputs differ" in res.problem()


def test_a_formula_that_disagrees_with_peft_is_caught():
    res = equality.run_case("lora", converters()["lora"].CASES[0], (24, 40), torch.float64, formula="r * d_in")
    assert not res.ok and "the entry's formula gives" in res.problem()


# -- errors a user can act on --------------------------------------------------------------------------------------
def _peft_layer(config):
    return equality.wrap(nn.Linear(8, 6), config)


def test_unsupported_layer_names_its_type_and_the_supported_ones():
    supported = r"torch\.nn\.modules\.linear\.Linear.*Supported:.*peft\.tuners\.lora\.layer\.Linear"
    with pytest.raises(PeftConversionError, match=supported):
        from_peft(nn.Linear(3, 4))


def test_unsupported_option_is_refused():
    _, layer = _peft_layer(peft.LoraConfig(r=2, target_modules=["proj"], lora_bias=True))
    with pytest.raises(PeftConversionError, match="lora_bias"):
        from_peft(layer)


def test_conv1d_layer_is_refused():
    from transformers.pytorch_utils import Conv1D

    _, layer = equality.wrap(Conv1D(6, 8), peft.LoraConfig(r=2, target_modules=["proj"], fan_in_fan_out=True))
    with pytest.raises(PeftConversionError, match="Conv1D"):
        from_peft(layer)


def test_merged_layer_is_refused():
    _, layer = _peft_layer(peft.LoraConfig(r=2, target_modules=["proj"]))
    layer.merge()
    with pytest.raises(PeftConversionError, match="unmerge"):
        from_peft(layer)


def test_several_adapters_need_a_name():
    model, layer = _peft_layer(peft.LoraConfig(r=2, target_modules=["proj"]))
    model.add_adapter("second", peft.LoraConfig(r=3, target_modules=["proj"]))
    layer.set_adapter(["default", "second"])
    with pytest.raises(PeftConversionError, match="2 active adapters"):
        from_peft(layer)
    assert from_peft(layer, adapter_name="second").r == 3
    with pytest.raises(PeftConversionError, match="no adapter 'third'"):
        from_peft(layer, adapter_name="third")


def test_conversion_copies_and_leaves_peft_untouched():
    _, layer = _peft_layer(peft.LoraConfig(r=2, target_modules=["proj"]))
    before = copy.deepcopy(layer.state_dict())
    ours = from_peft(layer)
    with torch.no_grad():
        ours.base.weight.add_(1.0)
        ours.A.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_pissa_is_chosen_by_name():
    """A PiSSA-initialised layer is a LoRA layer over W_res; the layer does not record its init."""
    _, layer = _peft_layer(peft.LoraConfig(r=2, lora_alpha=2, target_modules=["proj"], init_lora_weights="pissa"))
    assert type(from_peft(layer)) is LoRA
    assert type(from_peft(layer, method="pissa")) is PiSSA
    with pytest.raises(PeftConversionError, match="method='dora'"):
        from_peft(layer, method="dora")


def test_cli_compares_with_peft(capsys):
    from adapterspec.cli import main

    assert main(["peft", "lora", "ia3"]) == 0
    out = capsys.readouterr().out
    assert "equal  lora" in out and "2/2 methods equal peft's layers" in out
    assert main(["peft", "not-a-method"]) == 2
    assert "no peft converter for not-a-method" in capsys.readouterr().err
