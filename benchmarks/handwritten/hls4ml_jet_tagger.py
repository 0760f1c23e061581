"""The hand-written equivalent of fastml's hls4ml convert+verify stages, as a user would script it.

    python benchmarks/handwritten/hls4ml_jet_tagger.py MODEL.keras EVENTS.npz OUT_DIR [--strategy S]

Loads the trained HGQ2 model, converts it with hls4ml (Vitis, io_parallel, precisions from the HGQ2
quantisers), compiles the C-simulation, predicts the events and counts outputs that differ from
Keras. Prints one JSON line with the wall time of each step. No fastml import: this is the baseline.
"""

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("KERAS_BACKEND", "jax")

import hgq  # noqa: E402,F401  (registers the HGQ2 layers)
import hls4ml  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

T_IMPORT = time.perf_counter() - T0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("events")
    p.add_argument("out_dir")
    p.add_argument("--strategy", default="distributed_arithmetic")
    args = p.parse_args()
    t = {"import": T_IMPORT}

    t0 = time.perf_counter()
    model = keras.models.load_model(args.model, compile=False)
    x = np.load(args.events)["x"].astype(np.float32)
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, output_dir=args.out_dir, project_name="handwritten", backend="Vitis", io_type="io_parallel",
        part="xcvu13p-flga2577-2-e", clock_period=5.0,
        hls_config={"Model": {"Precision": "ap_fixed<1,0>", "ReuseFactor": 1, "Strategy": args.strategy}})
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
                      "mismatches": mismatches}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
