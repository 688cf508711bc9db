"""The fidelity verdict: does an accelerator cell compute what the CPU reference of the same model computes?

Every htp / dsp / gpu cell runs the same model the cpu backend runs (the same
QDQ model and encodings for integer precisions, the FP32 model for float ones),
so its output should agree with the cpu run's. Agreement is SQNR in dB.

The cpu run of a QDQ model is an imperfect integer reference: it dequantizes
and computes in FP32 between Q/DQ pairs, while the HTP fuses a convolution with
its activation and requantizes once, which often lands *closer* to FP32. A
low SQNR against the cpu run is only a fidelity failure when the backend is
also further from FP32 than the cpu reference is. The thresholds are the
lowest agreement a backend may show at each precision; they sit below what
working cells measure (fp16 37-76 dB: fp16 storage of every activation of the
deep PP-OCR detector gives 37 dB with no accuracy change; w8a16 45-60 dB; w8a8
14-44 dB on the default zoo) and far above what a broken kernel gives (QNN 2.51
w8a16 Log returning a constant measures -9.8 dB).
"""

from __future__ import annotations

#: Minimum SQNR (dB) of the backend output against the cpu run of the same model.
THRESHOLD_DB = {"fp32": 60.0, "fp16": 30.0, "w8a16": 25.0, "w8a8": 12.0, "w4a8": 8.0}
#: How much further from FP32 than the cpu reference (dB) a backend may be before it counts as worse.
WORSE_MARGIN_DB = 3.0


def fidelity_problem(
    precision: str,
    vs_cpu_db: float | None,
    vs_fp32_db: float | None,
    reference_vs_fp32_db: float | None,
) -> str | None:
    """Why the cell fails fidelity, or ``None`` when it does not.

    ``None`` SQNR values mean identical outputs (infinitely close). The cell fails
    when its agreement with the cpu run is below the precision's threshold and it
    is further from FP32 than the cpu reference by more than :data:`WORSE_MARGIN_DB`.
    """
    threshold = THRESHOLD_DB.get(precision)
    if threshold is None or vs_cpu_db is None or vs_cpu_db >= threshold:
        return None
    backend = float("inf") if vs_fp32_db is None else vs_fp32_db
    reference = float("inf") if reference_vs_fp32_db is None else reference_vs_fp32_db
    if backend >= reference - WORSE_MARGIN_DB:
        return None
    shown = "identical" if reference_vs_fp32_db is None else f"{reference:.1f} dB"
    return (
        f"output agrees with the cpu run of the same model at only {vs_cpu_db:.1f} dB SQNR (threshold "
        f"{threshold:.0f} dB for {precision}) and is further from FP32 ({backend:.1f} dB) than the cpu "
        f"reference is ({shown}): the backend computes something else"
    )
