"""Each quantization technique's metric and time per model, as JSON (and a Markdown table with --md).

For every model and precision it quantizes the model's canonical ONNX with
each technique, scores the QDQ model on the ``cpu`` backend over the card's
evaluation split (``zoocompat.run.quantize.quantize_card``, the same code as
``zoocompat quantize``) and records the metric, the drop against FP32 and the
seconds the technique took (calibration, AdaRound, fine-tuning, export; the
model's conversion is cached and not counted). Techniques: the aimet_onnx
ones by name (``ptq``, ``cle``, ``adaround``, ...), ``qat`` (the card's
``qat_quantizer``, aimet-torch) and ``ort`` (onnxruntime's static QDQ, the
light baseline). A technique that fails is recorded with its error, and the
rest go on.

Usage: python bench/techniques.py [--models a,b] [--precisions w8a8,w4a8]
[--techniques ptq,cle,adaround,qat,ort] [--md FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = "resnet_mnist,mobilenetv3_mnist,efficientnet_mnist,vit_mnist,mtcnn_onet,ppocr_textline_cls"
DEFAULT_TECHNIQUES = "ptq,cle,adaround,qat,ort"


def measure(runner: Any, model: str, precision: str, technique: str, work: Path) -> dict[str, Any]:
    """One technique on one model: metric, drop and seconds, or the error."""
    from zoocompat.api.errors import CellError
    from zoocompat.run.quantize import quantize_card

    quantizer, name = ("ort", "ptq") if technique == "ort" else (None, technique)
    began = time.perf_counter()
    try:
        done = quantize_card(
            model, precision, name, work / f"{model}-{precision}-{technique}", runner=runner, quantizer=quantizer
        )
    except CellError as error:
        return {"error": f"{error.category}: {error.message[:300]}", "seconds": round(time.perf_counter() - began, 2)}
    metric = done["metric"]
    return {
        "metric": metric["name"],
        "value": round(metric["value"], 4),
        "drop_pts": round(100 * metric["drop"], 2),
        "seconds": round(float(done["report"].get("seconds") or time.perf_counter() - began), 2),
        "quantizer": done["report"].get("quantizer"),
    }


def markdown(results: dict[str, Any]) -> str:
    """Per model and precision: FP32, then each technique's metric (drop in points) and seconds."""
    techniques = results["techniques"]
    lines = [
        "| model | precision | FP32 | " + " | ".join(techniques) + " |",
        "|---|---|---|" + "---|" * len(techniques),
    ]
    for model, per_model in results["models"].items():
        for precision in results["precisions"]:
            row = per_model["precisions"].get(precision, {})
            cells = []
            for technique in techniques:
                entry = row.get(technique, {})
                if "error" in entry:
                    cells.append("n/a" if "precision" in entry["error"] else "fails")
                elif entry:
                    cells.append(f"{entry['value']:.3f} ({entry['drop_pts']:+.1f}) {entry['seconds']:.0f} s")
                else:
                    cells.append("")
            lines.append(f"| {model} | {precision} | {per_model['fp32']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure and print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--precisions", default="w8a8,w4a8")
    parser.add_argument("--techniques", default=DEFAULT_TECHNIQUES)
    parser.add_argument("--md", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()

    from zoocompat.run.quantize import find_card, make_runner
    from zoocompat.run.scoring import fp32_value

    runner = make_runner()
    started = time.perf_counter()
    techniques = args.techniques.split(",")
    precisions = args.precisions.split(",")
    results: dict[str, Any] = {"techniques": techniques, "precisions": precisions, "models": {}}
    with tempfile.TemporaryDirectory(prefix="zoocompat-techniques-") as tmp:
        for model in args.models.split(","):
            card = find_card(runner, model)
            entry = {"fp32": round(fp32_value(runner, card), 4), "precisions": {}}
            for precision in precisions:
                entry["precisions"][precision] = {
                    t: measure(runner, model, precision, t, Path(tmp)) for t in techniques
                }
                print(f"{model} {precision}: {json.dumps(entry['precisions'][precision])}", file=sys.stderr, flush=True)
            results["models"][model] = entry
    results["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    if args.md:
        args.md.write_text(markdown(results))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
