"""The hand-written hls4ml flow for a QKeras model, as in the hls4ml paper: QKeras + TensorFlow + hls4ml.

    /tmp/venv-qkeras/bin/python benchmarks/handwritten/hls4ml_qkeras_mlp.py MODEL.h5 EVENTS.npz OUT_DIR

Runs in the QKeras side environment (tensorflow-cpu 2.15.1, qkeras 0.9.0, hls4ml 1.3.0): loads the .h5
with QKeras, makes hls4ml's per-layer config (``granularity="name"``: precisions from the QKeras
quantisers), converts (Vitis, io_parallel, latency strategy), compiles the C-simulation, predicts the
events and counts outputs that differ from QKeras's. Prints one JSON line with the wall time of each step.
No fastml import: this is the baseline.
"""

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml  # noqa: E402
import numpy as np  # noqa: E402
from qkeras.utils import load_qmodel  # noqa: E402

T_IMPORT = time.perf_counter() - T0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("events")
    p.add_argument("out_dir")
    args = p.parse_args()
    t = {"import": T_IMPORT}

    t0 = time.perf_counter()
    model = load_qmodel(args.model, compile=False)
    x = np.load(args.events)["x"].astype(np.float32)
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=args.out_dir, project_name="handwritten_qkeras", backend="Vitis",
        io_type="io_parallel", part="xcvu13p-flga2577-2-e", clock_period=5.0)
    t["convert"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hls_model.compile()
    t["compile"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    y_hls = np.asarray(hls_model.predict(np.ascontiguousarray(x))).reshape(len(x), -1)
    t["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    y_ref = np.asarray(model.predict(x, batch_size=8192, verbose=0)).reshape(len(x), -1)
    mismatches = int((y_ref != y_hls).sum())
    t["check"] = time.perf_counter() - t0
    print(json.dumps({"timings_s": {k: round(v, 3) for k, v in t.items()}, "events": len(x),
                      "outputs": int(y_ref.size), "mismatches": mismatches}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
