"""``voice_frames``: 16 kHz audio frames for a voice-activity model's three inputs, synthesised.

No package ships speech recordings offline, so the frames are synthesised: a
voiced frame is a glottal pulse train (pitch 90-260 Hz) through two formant
resonators (a vowel's F1 and F2) under a smooth envelope, mixed with
background noise at a seeded SNR; a background frame is the noise alone
(white, pink or a hum). The model's answer on them is not claimed to be right:
a card on this set is judged on fidelity to FP32 alone (``sqnr``, ``cosine``),
and the labels (1 = a synthesised voice is in the frame) only say how the
frame was made.

Samples are model-ready tensors for a Silero-style VAD: ``audio`` ``[N, 512]``
float32 in [-1, 1], ``state`` ``[N, 2, 1, 128]`` zeros (each frame is the first
of its stream) and ``sr`` ``[N]`` int64 16000. The train and test splits come
from different generator streams, so they never share a frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from zoocompat_plugins.datasets.params import check_params, check_seed, check_split, int_param

import zoocompat
from zoocompat.api import LabeledPool

RATE = 16000
FRAME = 512
STATE = (2, 1, 128)
#: (F1, F2) of a few vowels in Hz
_FORMANTS = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (570, 840), (660, 1720))


def _resonate(signal: np.ndarray, frequency: float, bandwidth: float) -> np.ndarray:
    """``signal`` through a two-pole resonator at ``frequency`` Hz."""
    from scipy.signal import lfilter

    radius = np.exp(-np.pi * bandwidth / RATE)
    theta = 2 * np.pi * frequency / RATE
    return lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], signal)


def _noise(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Background: white noise, pink-ish noise (white through a one-pole low-pass), or a mains hum."""
    from scipy.signal import lfilter

    if kind == 0:
        return rng.normal(0, 1, FRAME)
    if kind == 1:
        return lfilter([1.0], [1.0, -0.95], rng.normal(0, 1, FRAME))
    t = np.arange(FRAME) / RATE
    return np.sin(2 * np.pi * rng.choice([50, 60]) * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.1, FRAME)


def _frame(rng: np.random.Generator, voiced: bool) -> np.ndarray:
    noise = _noise(rng, int(rng.integers(3)))
    noise = noise / (np.std(noise) or 1.0)
    if not voiced:
        out = noise * rng.uniform(0.01, 0.2)
    else:
        pitch = rng.uniform(90, 260)
        pulses = np.zeros(FRAME)
        pulses[(np.arange(0, FRAME, RATE / pitch) + rng.uniform(0, RATE / pitch)).astype(int) % FRAME] = 1.0
        first, second = _FORMANTS[int(rng.integers(len(_FORMANTS)))]
        voice = _resonate(_resonate(pulses, first, 90), second, 110)
        voice *= np.hanning(FRAME) ** rng.uniform(0.1, 0.5)  # a smooth envelope, not a hard gate
        voice /= np.max(np.abs(voice)) or 1.0
        snr_db = rng.uniform(5, 30)
        out = voice * rng.uniform(0.2, 0.8) + noise * np.std(voice) * 10 ** (-snr_db / 20)
    return np.clip(out, -1, 1).astype(np.float32)


class VoiceFramesDataset:
    """Synthesised voiced and background frames with a VAD's state and sample-rate inputs."""

    name = "voice_frames"
    description = (
        "512-sample 16 kHz frames: synthesised vowels (pulse train through formants) in noise, or noise alone; "
        "inputs audio / state (zeros) / sr (16000); for fidelity-only cards (labels: 1 = a voice was synthesised)"
    )

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """``count`` frames (default 400 test, 200 train), half of them voiced, deterministic for ``seed``."""
        check_split(self.name, split)
        check_params(self.name, params, ("count",))
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", 400 if split == "test" else 200, 1)
        rng = np.random.default_rng([seed, 0 if split == "test" else 1])
        voiced = np.arange(count) % 2 == 1
        audio = np.stack([_frame(rng, bool(v)) for v in voiced])
        samples = {
            "audio": audio,
            "state": np.zeros((count, *STATE), np.float32),
            "sr": np.full(count, RATE, np.int64),
        }
        return LabeledPool(samples, voiced.astype(np.int64), ["background", "voice"])


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The audio datasets of this module."""
    return [VoiceFramesDataset()]
