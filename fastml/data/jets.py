"""Offline generation of the 5-class jet benchmark (g, q, W, Z, t) with Pythia 8 and FastJet.

Mirrors the setup of the hls4ml jet data set (Duarte et al., arXiv:1804.06913; OpenML 42468): pp
collisions at 13 TeV, anti-kT R=0.8 jets with pT ~ 1 TeV, no pile-up, no detector simulation, and the
16 high-level features of :mod:`fastml.data.jet_features`. Pythia 8 (``pythia8mc``) and FastJet are
imported only inside the generating functions, so this module (and :func:`load_table`) works without them.

Run ``python -m fastml.data.jets --per-class N --out FILE [--seed S] [--workers W] [--particles N]``;
with ``--particles N`` each jet also keeps its leading N constituents (:mod:`fastml.data.constituents`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .constituents import (
    JET_FIELDS,
    PARTICLE_TYPES,
    STORED_PARTICLE_FIELDS,
    ConstituentSample,
    save_constituents,
    to_float16_particles,
)
from .jet_features import jet_features, kinematics
from .table import JET_CLASSES, JET_FEATURES, Table

#: Settings shared by every class: 13 TeV pp, hard-process pT-hat window around 1 TeV, quiet output.
COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:eCM = 13000.",
    "PhaseSpace:pTHatMin = 950.",
    "PhaseSpace:pTHatMax = 1100.",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Print:quiet = on",
)

#: Hard processes per class (Pythia 8 names). W, Z and W from top decay only to quarks (u, d, s, c, b).
CLASS_SETTINGS: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"),
    "q": ("HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on"),
    "W": ("WeakDoubleBoson:ffbar2WW = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
    "Z": (
        "WeakDoubleBoson:ffbar2gmZgmZ = on",
        "WeakZ0:gmZmode = 2",  # pure Z, no photon interference
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
}

#: Truth PDG id (absolute) of the hard-process parton/boson that defines each class.
CLASS_PDG: dict[str, frozenset[int]] = {
    "g": frozenset({21}),
    "q": frozenset({1, 2, 3, 4, 5}),
    "W": frozenset({24}),
    "Z": frozenset({23}),
    "t": frozenset({6}),
}

#: Jet definition and selection.
JET_R: float = 0.8
JET_PT_MIN: float = 800.0
JET_PT_MAX: float = 1200.0
JET_ABS_ETA_MAX: float = 2.4
#: Truth matching: the parent and every quark it decays to lie within this Delta R of the jet axis.
MATCH_DR: float = 0.8
#: Jets per generation task; fixing it (not the worker count) makes the output reproducible.
CHUNK_JETS: int = 500


def require_generators(what: str = "jet generation") -> tuple[Any, Any]:
    """Import pythia8mc and fastjet, or raise DataError with a one-line install hint naming ``what`` needs them.

    Shared by every generator (jets here, trigger objects in ``fastml.data.anomaly``).
    """
    try:
        import fastjet
        import pythia8mc
    except ImportError as exc:
        raise DataError(f"{what} needs the 'generate' extra: pip install -e '.[generate]' (in a fastml checkout)"
                        ) from exc
    return pythia8mc, fastjet


def generator_versions() -> dict[str, str]:
    """Installed versions of the packages that determine the generated sample."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("pythia8mc", "fastjet"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _delta_r(rap1: float, phi1: float, rap2: np.ndarray | float, phi2: np.ndarray | float) -> np.ndarray:
    dphi = np.mod(np.asarray(phi2) - phi1 + np.pi, 2.0 * np.pi) - np.pi
    return np.hypot(np.asarray(rap2) - rap1, dphi)


def _decay_leaves(process: Any, index: int) -> list[int]:
    """Indices of the final partons a hard-process particle decays to in Pythia's process record.

    For an undecayed parton (q/g) this is the particle itself; for t it is b plus the W's quarks.
    """
    leaves: list[int] = []
    stack = [index]
    while stack:
        k = stack.pop()
        daughters = [d for d in process[k].daughterList() if d != k]
        if daughters:
            stack.extend(daughters)
        else:
            leaves.append(k)
    return leaves


def _truth_objects(process: Any, pdg: frozenset[int]) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """(rap, phi, leaf raps, leaf phis) of each outgoing hard-process particle of the wanted type.

    The two outgoing particles of a 2 -> 2 process sit at indices 5 and 6 of the process record.
    """
    out = []
    for idx in (5, 6):
        prt = process[idx]
        if abs(prt.id()) not in pdg:
            continue
        leaves = _decay_leaves(process, idx)
        p4 = np.array([[process[k].px(), process[k].py(), process[k].pz(), process[k].e()] for k in leaves])
        _, lrap, lphi = kinematics(p4)
        _, rap, phi = kinematics(np.array([[prt.px(), prt.py(), prt.pz(), prt.e()]]))
        out.append((float(rap[0]), float(phi[0]), lrap, lphi))
    return out


def _particle_type(pdg_id: int, charge: float) -> int:
    """Code in ``PARTICLE_TYPES`` of a visible final-state particle (a generator-level particle-flow class)."""
    a = abs(pdg_id)
    if a == 22:
        return 1
    if a == 11:
        return 2
    if a == 13:
        return 3
    return 4 if charge != 0 else 5


def _leading_constituents(
    p4: np.ndarray, pid: np.ndarray, charge: np.ndarray, jet: Any, n_particles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The jet's leading ``n_particles`` constituents by pT, zero-padded.

    Returns (kin (n, 3) float64 = pT/pT_jet, eta - eta_jet, phi - phi_jet wrapped to [-pi, pi);
    type (n,) int8 codes of PARTICLE_TYPES; charge (n,) int8). The jet axis is FastJet's E-scheme axis.
    """
    pt = np.hypot(p4[:, 0], p4[:, 1])
    eta = np.arcsinh(p4[:, 2] / np.maximum(pt, 1e-300))
    phi = np.arctan2(p4[:, 1], p4[:, 0])
    order = np.argsort(-pt, kind="stable")[:n_particles]
    m = order.size
    kin = np.zeros((n_particles, 3))
    kin[:m, 0] = pt[order] / jet.pt()
    kin[:m, 1] = eta[order] - jet.eta()
    kin[:m, 2] = np.mod(phi[order] - jet.phi_std() + np.pi, 2.0 * np.pi) - np.pi
    ptype = np.zeros(n_particles, dtype=np.int8)
    ptype[:m] = [_particle_type(int(i), float(c)) for i, c in zip(pid[order], charge[order], strict=True)]
    chg = np.zeros(n_particles, dtype=np.int8)
    chg[:m] = np.rint(charge[order]).astype(np.int8)
    return kin, ptype, chg


def _generate_chunk(
    task: tuple[int, int, int], n_particles: int = 0
) -> tuple[int, dict[str, np.ndarray], dict[str, int]]:
    """Generate ``n_jets`` truth-matched jets of class ``JET_CLASSES[label]`` with Pythia seed ``seed``.

    Returns (label, arrays, counters); ``arrays["hlf"]`` is (n_jets, 16) float64. With ``n_particles > 0``
    it also holds the leading constituents (``particles``, ``particle_type``, ``particle_charge``), the
    jet four-vector summary ``jet`` (pt, eta, phi, mass, energy) and ``n_constituents``. Keeping
    constituents draws no random numbers, so the jets are the same whatever ``n_particles`` is.
    Runs in a worker process.
    """
    label, n_jets, seed = task
    pythia8mc, fastjet = require_generators()
    name = JET_CLASSES[label]
    pythia = pythia8mc.Pythia("", False)
    for line in (*COMMON_SETTINGS, *CLASS_SETTINGS[name], "Random:setSeed = on", f"Random:seed = {seed}"):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for class {name!r}")
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
    rows: list[np.ndarray] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []
    counts = {"events": 0, "failed_events": 0, "jets_in_window": 0, "jets_matched": 0}
    while len(rows) < n_jets:
        if not pythia.next():
            counts["failed_events"] += 1
            continue
        counts["events"] += 1
        truth = _truth_objects(pythia.process, CLASS_PDG[name])
        if not truth:
            continue
        # Visible final-state particles (neutrinos excluded), as a generator-level "particle flow".
        visible = [p for p in pythia.event if p.isFinal() and p.isVisible()]
        p4 = np.array([[p.px(), p.py(), p.pz(), p.e()] for p in visible])
        if n_particles:
            pid = np.array([p.id() for p in visible], dtype=np.int64)
            charge = np.array([p.charge() for p in visible], dtype=np.float64)
        inputs = []
        for k, (px, py, pz, e) in enumerate(p4):
            pj = fastjet.PseudoJet(float(px), float(py), float(pz), float(e))
            pj.set_user_index(k)
            inputs.append(pj)
        cluster = fastjet.ClusterSequence(inputs, jet_def)
        for jet in cluster.inclusive_jets(JET_PT_MIN):
            if not (jet.pt() <= JET_PT_MAX and abs(jet.eta()) <= JET_ABS_ETA_MAX):
                continue
            counts["jets_in_window"] += 1
            jrap, jphi = jet.rap(), jet.phi_std()
            matched = any(
                _delta_r(jrap, jphi, rap, phi) < MATCH_DR
                and bool(np.all(_delta_r(jrap, jphi, lrap, lphi) < MATCH_DR))
                for rap, phi, lrap, lphi in truth
            )
            if not matched:
                continue
            counts["jets_matched"] += 1
            idx = np.array([c.user_index() for c in jet.constituents()], dtype=np.int64)
            rows.append(jet_features(p4[idx]))
            if n_particles:
                kin, ptype, chg = _leading_constituents(p4[idx], pid[idx], charge[idx], jet, n_particles)
                summary = np.array([jet.pt(), jet.eta(), jet.phi_std(), jet.m(), jet.e()])
                parts.append((kin, ptype, chg, summary, idx.size))
            if len(rows) == n_jets:
                break
        del cluster
    arrays = {"hlf": np.array(rows, dtype=np.float64).reshape(n_jets, len(JET_FEATURES))}
    if n_particles:
        arrays["particles"] = np.stack([p[0] for p in parts])
        arrays["particle_type"] = np.stack([p[1] for p in parts])
        arrays["particle_charge"] = np.stack([p[2] for p in parts])
        arrays["jet"] = np.stack([p[3] for p in parts])
        arrays["n_constituents"] = np.array([p[4] for p in parts], dtype=np.int32)
    return label, arrays, counts


def _tasks(per_class: int, seed: int) -> list[tuple[int, int, int]]:
    """(label, n_jets, pythia_seed) per chunk, class-major; seeds derived from ``seed`` reproducibly."""
    sizes = [CHUNK_JETS] * (per_class // CHUNK_JETS) + (
        [per_class % CHUNK_JETS] if per_class % CHUNK_JETS else []
    )
    n_tasks = len(sizes) * len(JET_CLASSES)
    # Pythia accepts seeds in [1, 900 000 000]; SeedSequence gives well-separated distinct streams.
    raw = np.random.SeedSequence(seed).generate_state(n_tasks, dtype=np.uint64) % 899_999_999 + 1
    tasks = []
    for label in range(len(JET_CLASSES)):
        for j, size in enumerate(sizes):
            tasks.append((label, size, int(raw[label * len(sizes) + j])))
    return tasks


def _generate_arrays(
    per_class: int, seed: int, workers: int, progress: bool, n_particles: int
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Run every chunk task and return (arrays shuffled with ``seed``, labels int64, metadata)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    require_generators()
    tasks = _tasks(per_class, seed)
    start = time.time()
    results: dict[int, tuple[int, dict[str, np.ndarray], dict[str, int]]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per_class * len(JET_CLASSES), unit="jet", desc="generating jets")
    for i, result in _run_tasks(tasks, workers, n_particles):
        results[i] = result
        if bar is not None:
            bar.update(result[1]["hlf"].shape[0])
    if bar is not None:
        bar.close()
    wall = time.time() - start
    arrays = {key: np.concatenate([results[i][1][key] for i in range(len(tasks))]) for key in results[0][1]}
    y = np.concatenate(
        [np.full(results[i][1]["hlf"].shape[0], results[i][0], dtype=np.int64) for i in range(len(tasks))]
    )
    # The same permutation as the HLF-only run, so row i is the same jet in both files.
    order = np.random.default_rng(seed).permutation(y.shape[0])
    counts: dict[str, dict[str, int]] = {}
    for label, _, c in results.values():
        agg = counts.setdefault(JET_CLASSES[label], {})
        for key, val in c.items():
            agg[key] = agg.get(key, 0) + val
    meta: dict[str, Any] = {
        "source": "fastml.data.jets.generate_jets (Pythia 8 + FastJet)",
        "reference": "arXiv:1804.06913 (hls4ml jet benchmark, OpenML 42468)",
        "per_class": per_class,
        "seed": seed,
        "workers": workers,
        "chunk_jets": CHUNK_JETS,
        "tasks": [{"class": JET_CLASSES[lab], "n_jets": n, "pythia_seed": s} for lab, n, s in tasks],
        "settings": {
            "common": list(COMMON_SETTINGS),
            "per_class": {k: list(v) for k, v in CLASS_SETTINGS.items()},
        },
        "jets": {
            "algorithm": "anti-kt",
            "R": JET_R,
            "pt_min": JET_PT_MIN,
            "pt_max": JET_PT_MAX,
            "abs_eta_max": JET_ABS_ETA_MAX,
            "inputs": "visible final-state particles (no neutrinos), no pile-up",
            "truth_match": f"parent and all its decay quarks within Delta R < {MATCH_DR} of the jet axis",
            "grooming": "mMDT (soft drop beta=0, z_cut=0.1, C/A) for *_mmdt features",
        },
        "counts": counts,
        "rows_shuffled_with_seed": seed,
        "versions": generator_versions(),
        "wall_time_s": round(wall, 1),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {k: v[order] for k, v in arrays.items()}, y[order], meta


def generate_jets(per_class: int, seed: int = 1, workers: int = 2, progress: bool = True) -> Table:
    """Generate ``per_class`` truth-labelled jets of each class in ``JET_CLASSES`` with Pythia 8 + FastJet.

    Guarantees: a Table with ``per_class * 5`` rows, features in ``JET_FEATURES`` order (float32), labels
    in ``JET_CLASSES`` order, rows shuffled with ``seed``; identical output for identical
    (per_class, seed, package versions) whatever ``workers`` is. ``metadata`` records the generator
    settings per class, every Pythia seed, package versions, event counts and wall time.
    Raises DataError (one line) when pythia8mc/fastjet are not installed.
    """
    arrays, y, meta = _generate_arrays(per_class, seed, workers, progress, n_particles=0)
    return Table(
        x=arrays["hlf"].astype(np.float32), y=y, feature_names=JET_FEATURES, class_names=JET_CLASSES, metadata=meta
    )


def generate_jet_constituents(
    per_class: int, seed: int = 1, workers: int = 2, progress: bool = True, n_particles: int = 32
) -> ConstituentSample:
    """Like :func:`generate_jets`, and keep each jet's leading ``n_particles`` constituents.

    Guarantees: the jets (and their row order) are those :func:`generate_jets` makes with the same
    (per_class, seed) — keeping constituents draws no random numbers; ``hlf`` holds their 16 features.
    Raises DataError (one line) when pythia8mc/fastjet are not installed.
    """
    if n_particles < 1:
        raise ValueError(f"n_particles must be >= 1, got {n_particles}")
    arrays, y, meta = _generate_arrays(per_class, seed, workers, progress, n_particles=n_particles)
    meta = {
        **meta,
        "source": "fastml.data.jets.generate_jet_constituents (Pythia 8 + FastJet)",
        "constituents": {
            "n_particles": n_particles,
            "order": "pT-descending, zero-padded after the last real particle",
            "particles": list(STORED_PARTICLE_FIELDS),
            "axis": "FastJet E-scheme jet axis; eta is pseudorapidity; dphi wrapped to [-pi, pi)",
            "particle_type": list(PARTICLE_TYPES),
            "jet": list(JET_FIELDS),
        },
    }
    return ConstituentSample(
        particles=to_float16_particles(arrays["particles"], arrays["particle_type"] != 0),
        particle_type=arrays["particle_type"].astype(np.int8),
        particle_charge=arrays["particle_charge"].astype(np.int8),
        jet=arrays["jet"].astype(np.float32),
        n_constituents=arrays["n_constituents"].astype(np.int16),
        hlf=arrays["hlf"].astype(np.float32),
        y=y,
        class_names=JET_CLASSES,
        metadata=meta,
    )


def _run_tasks(
    tasks: Sequence[tuple[int, int, int]], workers: int, n_particles: int = 0
) -> Iterator[tuple[int, tuple[int, dict[str, np.ndarray], dict[str, int]]]]:
    """Yield (task index, result) as tasks finish, in a process pool when ``workers > 1``."""
    if workers <= 1:
        for i, task in enumerate(tasks):
            yield i, _generate_chunk(task, n_particles)
        return
    import multiprocessing as mp

    # One BLAS thread per worker: the workers already fill the cores, extra threads only contend.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # "spawn" avoids forking a process that may already hold Pythia/FastJet or threaded BLAS state.
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_indexed_chunk, [(i, t, n_particles) for i, t in enumerate(tasks)])


def _indexed_chunk(
    item: tuple[int, tuple[int, int, int], int],
) -> tuple[int, tuple[int, dict[str, np.ndarray], dict[str, int]]]:
    return item[0], _generate_chunk(item[1], item[2])


def save_table(table: Table, path: str | Path) -> None:
    """Write ``table`` as compressed .npz (x float32, y int64, names, metadata JSON) that load_table reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:  # a file object stops numpy from appending ".npz" to other suffixes
        np.savez_compressed(
            fh,
            x=np.asarray(table.x, dtype=np.float32),
            y=np.asarray(table.y, dtype=np.int64),
            feature_names=np.array(table.feature_names, dtype=str),
            class_names=np.array(table.class_names, dtype=str),
            metadata=np.array(json.dumps(table.metadata, sort_keys=True)),
        )


def load_table(path: str | Path) -> Table:
    """Read a Table written by :func:`save_table`; no pickles are loaded. Raises DataError if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return Table(
                x=data["x"].astype(np.float32),
                y=data["y"].astype(np.int64),
                feature_names=tuple(str(s) for s in data["feature_names"]),
                class_names=tuple(str(s) for s in data["class_names"]),
                metadata=json.loads(str(data["metadata"])),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read jet table {path}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: generate jets (optionally with constituents) and save them as .npz."""
    parser = argparse.ArgumentParser(prog="python -m fastml.data.jets", description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, required=True, help="jets per class (g, q, W, Z, t)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz file")
    parser.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--particles", type=int, default=0, metavar="N",
        help="also keep each jet's leading N constituents (a jet-constituents file; default 0: features only)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.per_class < 1 or args.particles < 0:
        parser.exit(2, "error: --per-class must be >= 1 and --particles >= 0\n")
    try:
        if args.particles:
            sample = generate_jet_constituents(
                args.per_class, seed=args.seed, workers=args.workers, progress=not args.no_progress,
                n_particles=args.particles,
            )
            save_constituents(sample, args.out)
            n_jets, wall = sample.y.shape[0], sample.metadata["wall_time_s"]
        else:
            table = generate_jets(args.per_class, seed=args.seed, workers=args.workers, progress=not args.no_progress)
            save_table(table, args.out)
            n_jets, wall = table.y.shape[0], table.metadata["wall_time_s"]
    except DataError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {n_jets} jets to {args.out} in {wall} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
