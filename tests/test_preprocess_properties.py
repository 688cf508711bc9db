"""Property-based: every valid preprocessing of every kind of image gives model input or a bad_input naming a field.

Hypothesis draws an image (grey or RGB, uint8 or float, of any small size), an
input (layout, dtype, shape) and a preprocessing (channels, channel order,
resize / resize_short, center crop, scale, mean and std of the right length),
all valid by the card schema, and feeds them through ``to_model_input``, the
one path every registered dataset's and image source's samples take. The
result must be an array of exactly the input's sample shape and dtype, or a
``CellError`` of category ``bad_input`` whose message names the card field to
fix. Anything else (a ``TypeError`` from Pillow, a numpy broadcast error) is a
bug that would reach a record as a traceback.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoocompat.api.errors import CellError
from zoocompat.model.cards import InputSpec
from zoocompat.model.data import to_model_input

pytestmark = pytest.mark.bad_input
FIELDS = ("inputs.preprocess", "inputs.shape", "preprocess.resize", "center_crop", "channels", "mean", "std")


@st.composite
def cases(draw):
    height, width = draw(st.integers(2, 24)), draw(st.integers(2, 24))
    channels_in = draw(st.sampled_from([None, 1, 3]))  # None: a 2-D grey image
    dtype_in = draw(st.sampled_from([np.uint8, np.float32]))
    shape = (height, width) if channels_in is None else (height, width, channels_in)
    image = draw(st.just(np.random.default_rng(draw(st.integers(0, 99))).uniform(0, 255, shape).astype(dtype_in)))
    channels = draw(st.sampled_from([None, 1, 3]))
    resize = draw(st.one_of(st.none(), st.tuples(st.integers(1, 20), st.integers(1, 20))))
    resize_short = None if resize else draw(st.one_of(st.none(), st.integers(1, 20)))
    crop = draw(st.one_of(st.none(), st.tuples(st.integers(1, 12), st.integers(1, 12))))
    width_c = channels or (1 if channels_in in (None, 1) else 3)
    norm = draw(st.sampled_from(["none", "per-channel", "wrong-length"]))
    count = {"none": 0, "per-channel": width_c, "wrong-length": width_c + 1}[norm]
    mean = [draw(st.floats(-2, 2)) for _ in range(count)] or None
    std = [draw(st.sampled_from([0.5, 1.0, 2.0, -1.0])) for _ in range(count)] or None
    preprocess = {
        "channels": channels,
        "channel_order": draw(st.sampled_from(["RGB", "BGR"])),
        "resize": resize,
        "resize_short": resize_short,
        "center_crop": crop,
        "scale": draw(st.sampled_from([1.0, 1 / 255, -1.0])),
        "mean": mean,
        "std": std,
    }
    # the input's declared size: mostly what the preprocessing gives, sometimes not (a wrong card)
    out_h, out_w = crop or resize or (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    c = draw(st.sampled_from([width_c, width_c, 3 if width_c == 1 else 1]))
    dims = [1, c, out_h, out_w] if layout == "NCHW" else [1, out_h, out_w, c]
    spec = InputSpec(
        name="x",
        shape=dims,
        dtype=draw(st.sampled_from(["float32", "float16", "uint8", "int32"])),
        layout=layout,
        preprocess={k: v for k, v in preprocess.items() if v is not None},
    )
    return image, spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_preprocessing_gives_the_input_or_a_bad_input_naming_the_field(case):
    image, spec = case
    try:
        batch = to_model_input([image, image], spec)
    except CellError as error:
        assert error.category == "bad_input", error.message
        assert any(field in error.message for field in FIELDS), error.message
        return
    assert batch.shape == (2, *spec.sample_shape) and batch.dtype == np.dtype(spec.dtype)


def test_a_grey_float_image_made_three_channel_and_resized_is_model_input():
    """The reported crash: ``channels: 3`` plus ``resize`` on a greyscale float dataset ("Cannot handle this data
    type: (1, 1, 3), <f4" from Pillow) now gives the input.
    """
    spec = InputSpec(name="x", shape=[1, 3, 16, 16], preprocess={"channels": 3, "resize": [16, 16]})
    grey = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    batch = to_model_input([grey], spec)
    assert batch.shape == (1, 3, 16, 16) and np.allclose(batch[0, 0], batch[0, 2])
