"""Regression metrics: the error of each sample's predicted values against its target values.

Labels are floats per sample, ``[N]`` or ``[N, D]`` (any ``[N, ...]``); the output
(``metric.output``, one output) holds the same number of values per sample, in
any shape with the sample axis first (``[N, 1]`` for ``[N]`` labels is fine).

- ``mae``: mean absolute error over the sample's values.
- ``rmse``: per sample, ``sqrt(mean((output - label)^2))`` over that sample's
  values (for one value per sample it is the absolute error); the mean over
  samples is the mean of these, not the dataset RMSE (which is no mean of per-sample
  scores), so that runs compare sample by sample.

Both are lower-is-better; the card's tolerance is the largest allowed rise. Output
values are brought to the labels' units by ``metric.params``::

    metric:
      name: mae
      output: age
      params: {scale: 100.0, offset: 0.0}   # label = output * scale + offset (defaults 1 and 0)

``against: fp32`` measures the error against the FP32 model's output on the same
samples instead of labels (a fidelity measure that needs no labels, in the output's
own units: a probability's absolute error, where a per-sample SQNR of one scalar
would be swayed by how small the value is); ``scale`` and ``offset`` then apply to
both sides.

Only numpy is imported here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from zoocompat_plugins.metrics.params import one_output, require_labels

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["Mae", "Rmse"]

PARAMS = ("scale", "offset", "against")


class _Regression:
    """Shared parsing of the regression metrics; subclasses reduce the per-value errors."""

    name = ""
    higher_is_better = False
    #: what the output is compared with: the labels, or (``against: fp32``) the FP32 model's output
    compared_with = "labels"

    def __init__(self) -> None:
        self.scale = 1.0
        self.offset = 0.0

    def configure(self, params: dict[str, Any]) -> _Regression:
        """A copy with ``scale`` and ``offset`` from a card's ``metric.params`` (label = output * scale + offset)."""
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: unknown metric.params.{unknown[0]} (all unknown: {unknown}); "
                f"allowed: {list(PARAMS)}; fix metric.params in the card",
            )
        configured = copy.copy(self)
        against = params.get("against", "labels")
        if against not in ("labels", "fp32"):
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: metric.params.against must be labels or fp32, got {against!r}; "
                "fix metric.params.against in the card",
            )
        configured.compared_with = against
        for key, default in (("scale", 1.0), ("offset", 0.0)):
            value = params.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise CellError(
                    "bad_input",
                    f"metric {self.name!r}: metric.params.{key} must be a finite number, got {value!r}; "
                    f"fix metric.params.{key} in the card",
                )
            setattr(configured, key, float(value))
        if configured.scale == 0.0:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: metric.params.scale is 0, which maps every output to the offset; "
                "fix metric.params.scale in the card",
            )
        return configured

    def errors(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``output * scale + offset - labels`` as ``[N, values per sample]`` float64."""
        one_output(self.name, output, "one of them")
        require_labels(self.name, labels, "the card's data must give target values per sample")
        output, labels = np.asarray(output), np.asarray(labels)
        if labels.dtype.kind not in "iuf":
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: labels must be numbers, got dtype {labels.dtype}; give float targets "
                "per sample ([N] or [N, D])",
            )
        if output.ndim < 1 or len(output) != len(labels) or output.size != labels.size:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: output of shape {list(output.shape)} does not match labels of shape "
                f"{list(labels.shape)}; both need the sample axis first and as many values per sample "
                "(check metric.output)",
            )
        count = len(labels)
        predicted = output.astype(np.float64).reshape(count, -1) * self.scale + self.offset
        target = labels.astype(np.float64).reshape(count, -1)
        if self.compared_with == "fp32":  # the FP32 output, in the output's units like the prediction
            target = target * self.scale + self.offset
        return predicted - target


class Mae(_Regression):
    """Mean absolute error per sample (lower is better)."""

    name = "mae"

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per sample, the mean absolute difference between the (scaled) output values and the labels."""
        return np.mean(np.abs(self.errors(output, labels)), axis=1)


class Rmse(_Regression):
    """Root mean squared error per sample: ``sqrt`` of the mean squared error over the sample's values."""

    name = "rmse"

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per sample, ``sqrt(mean((output * scale + offset - label)^2))`` over its values."""
        return np.sqrt(np.mean(self.errors(output, labels) ** 2, axis=1))


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The regression metrics of this module."""
    return [Mae(), Rmse()]
