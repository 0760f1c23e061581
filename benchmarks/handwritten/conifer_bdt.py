"""The hand-written equivalent of fastml's conifer convert+verify stages, as a user would script it.

    python benchmarks/handwritten/conifer_bdt.py MODEL.json EVENTS.npz OUT_DIR [--input P] [--threshold P]
        [--score P] [--backend B]

Loads the trained xgboost model, converts it with conifer at given precisions (the runner passes the
ones fastml's search chose; no search here), compiles the emulation, predicts the events. Prints one
JSON line with the wall time of each step. Needs XILINX_AP_INCLUDE and nlohmann/json on
CPLUS_INCLUDE_PATH, like any conifer script. No fastml import: this is the baseline.
"""

import argparse
import json
import sys
import time

T0 = time.perf_counter()

import conifer  # noqa: E402
import numpy as np  # noqa: E402
import xgboost  # noqa: E402

T_IMPORT = time.perf_counter() - T0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("events")
    p.add_argument("out_dir")
    p.add_argument("--input", default="ap_fixed<18,8>")
    p.add_argument("--threshold", default="ap_fixed<18,8>")
    p.add_argument("--score", default="ap_fixed<18,8>")
    p.add_argument("--backend", default="xilinxhls", choices=["xilinxhls", "cpp"])
    args = p.parse_args()
    t = {"import": T_IMPORT}

    t0 = time.perf_counter()
    booster = xgboost.Booster()
    booster.load_model(args.model)
    x = np.load(args.events)["x"].astype(np.float64)
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    backend = conifer.backends.xilinxhls if args.backend == "xilinxhls" else conifer.backends.cpp
    cfg = backend.auto_config(granularity="full") if args.backend == "xilinxhls" else backend.auto_config()
    cfg["OutputDir"] = args.out_dir
    cfg["ProjectName"] = "handwritten"
    cfg["XilinxPart"] = "xcvu13p-flga2577-2-e"
    cfg["ClockPeriod"] = 5.0
    cfg.pop("Precision", None)
    cfg.update(InputPrecision=args.input, ThresholdPrecision=args.threshold, ScorePrecision=args.score)
    model = conifer.converters.convert_from_xgboost(booster, cfg)
    t["convert"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model.compile()
    t["compile"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    y = np.asarray(model.decision_function(x))
    t["predict"] = time.perf_counter() - t0
    print(json.dumps({"timings_s": {k: round(v, 3) for k, v in t.items()}, "events": len(x),
                      "outputs": int(y.size)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
