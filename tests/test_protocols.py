"""The plugin protocols: every optional member the core reads is declared, with one documented default."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from zoocompat_plugins.backends.cpu import CpuBackend
from zoocompat_plugins.backends.htp import HtpBackend
from zoocompat_plugins.metrics.classification import Top1
from zoocompat_plugins.metrics.ocr import ExactMatch
from zoocompat_plugins.quantizers.aimet_torch import AimetTorchQatQuantizer
from zoocompat_plugins.quantizers.ort_static import OrtStaticQuantizer

import zoocompat.api
from zoocompat.api import OPTIONAL_MEMBERS, Backend, Metric, Quantizer, missing_members, optional
from zoocompat.api import protocols as protocols_module

CORE = Path(zoocompat.api.__file__).parent.parent


def test_optional_returns_the_member_or_the_documented_default():
    assert optional(HtpBackend(), "sdk_axis") is True and optional(CpuBackend(), "sdk_axis") is False
    assert optional(CpuBackend(), "code_modules") == () and optional(CpuBackend(), "configure") is None
    assert optional(HtpBackend(), "configure") is not None
    assert optional(Top1(), "configure") is None and optional(ExactMatch(), "configure") is not None
    assert (
        optional(OrtStaticQuantizer(), "train_quantize") is None and optional(OrtStaticQuantizer(), "settings") is None
    )
    assert optional(AimetTorchQatQuantizer(), "samples") == 1024
    assert optional(object(), "techniques") == ("ptq",) and optional(object(), "timeout_s") is None


def test_an_inherited_protocol_stub_counts_as_not_offered():
    class Npu9000(Backend):
        name = "npu9000"
        precisions = ("fp32",)

    class Scored(Metric):
        name = "m"
        higher_is_better = True

    assert optional(Npu9000(), "configure") is None  # the stub would do nothing and return None
    assert optional(Scored(), "configure") is None  # the stub would return None instead of a metric


def test_an_unknown_optional_name_is_a_clear_error():
    with pytest.raises(KeyError, match="no optional member.*sdk_axis"):
        optional(CpuBackend(), "sdk_axes")


def test_every_optional_member_is_declared_on_its_protocol_with_a_docstring_or_comment():
    source = Path(protocols_module.__file__).read_text()
    for protocol, names in OPTIONAL_MEMBERS.items():
        for name in names:
            assert name in protocol.__dict__, f"{protocol.__name__}.{name} is not declared"
            value = protocol.__dict__[name]
            if callable(value):
                assert value.__doc__ and value.__doc__.startswith("Optional."), f"{protocol.__name__}.{name}"
            else:
                body = source.split(f"class {protocol.__name__}(")[1].split(f"\n    {name}:")[0]
                above = body.rstrip("\n").splitlines()
                comment = []  # the #: lines right above the attribute
                while above and above[-1].strip().startswith("#:"):
                    comment.insert(0, above.pop().strip())
                assert comment and comment[0].startswith("#: Optional"), f"{protocol.__name__}.{name}: no comment"


def test_members_of_one_name_share_their_default():
    defaults: dict[str, set] = {}
    for protocol, names in OPTIONAL_MEMBERS.items():
        for name in names:
            value = protocol.__dict__[name]
            # repr: a default may be an unhashable mapping
            defaults.setdefault(name, set()).add(repr(None if callable(value) else value))
    assert {name: values for name, values in defaults.items() if len(values) > 1} == {}


def test_required_members_of_the_builtins_are_all_there():
    assert missing_members(CpuBackend(), Backend) == []
    assert missing_members(OrtStaticQuantizer(), Quantizer) == []
    assert missing_members(object(), Metric) == ["name", "higher_is_better", "score"]


def test_the_core_reads_no_optional_member_with_getattr_or_hasattr():
    names = {name for members in OPTIONAL_MEMBERS.values() for name in members}
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in names
            ):
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert offenders == []


def test_the_api_exports_what_the_protocols_declare():
    assert set(protocols_module.__all__) <= set(zoocompat.api.__all__)
    assert "TrainingJob" in zoocompat.api.__all__
