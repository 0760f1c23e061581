"""Scans: many build recipes from one, run on Dask, two phases, one results table.

A scan YAML names a base build recipe and the dotted keys to vary (grids, explicit points, random
draws such as log-uniform ranges with a seed; see ``fastml.scan.spec``). Every point is an ordinary
build recipe, validated before anything runs, built into its own project
``<output_dir>/<scan name>/<scan name>-NNN/`` (atomically, as ``fastml build`` does).

Engine: Dask (``distributed``), never a home-made scheduler. With no address ``fastml scan`` starts a
``LocalCluster`` on this machine (processes, one thread each, one per core); ``--scheduler
tcp://host:8786`` uses a running cluster; a ``cluster:`` section builds a dask-jobqueue SLURM /
HTCondor cluster (``fastml[cluster]``). Tasks carry the recipe (a small dict) and return the point's
figures (a small dict): models stay in the project folders, which therefore must be on a file system
the driver and workers share, as must file data (``builtin:`` data ships with fastml).

Two phases:

1. *train + estimate* every point: HGQ2 training and da4ml's cost model (LUT/FF, latency), no
   firmware; the point's project holds the recipe and a report whose bit-exact checks are "not run".
2. *firmware* for the points on the accuracy-vs-LUT (or vs EBOPs) Pareto front (``phase2.build:
   pareto``; or ``all`` / ``none``): ``fastml.pipeline.build``, C-sim/RTL verified, and
   ``fastml synth`` where Vivado/Vitis exist when ``phase2.synth: true``. The full build retrains the
   point from its recipe (same seed, same data), so the project holds a normal, self-contained build.

Results: ``scan.parquet`` + ``scan.csv`` (one row per point: varied values, status and one-line
reason, accuracies, EBOPs, LUT/FF/DSP/BRAM per source, latency, mismatches, wall times, attempts)
and ``pareto.png`` in the scan folder. ``fastml check`` works on any point's project.

Resume and faults: ``--resume`` skips a point whose project holds an ``ok`` report of the same config
hash and ``--quick`` (its ``report.json`` has a ``scan`` entry). A worker that dies mid-point has its
task rerun by Dask (only that point is redone: its half-built staging folder is cleaned up by the
project lock); each future completes once, so each point is recorded once. A point whose build
fails is recorded as failed with its one-line reason and the scan goes on.
"""

from __future__ import annotations

from .engine import ScanResult, jobqueue_cluster, open_client, run_scan, summary_lines
from .spec import ScanPoint, ScanSpec, expand, load_scan, parse_scan
from .worker import WORKER_ENV, run_point, train_and_estimate

__all__ = ["WORKER_ENV", "ScanPoint", "ScanResult", "ScanSpec", "expand", "jobqueue_cluster", "load_scan",
           "open_client", "parse_scan", "run_point", "run_scan", "summary_lines", "train_and_estimate"]
