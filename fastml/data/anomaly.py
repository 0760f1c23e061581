"""Event-level trigger-object data for anomaly-detection triggers: Pythia 8 generation, storage, loading.

Each event is reduced to Level-1-like trigger objects in the layout of the public anomaly-detection
challenge data (ADC2021, Govorkova et al., Sci. Data 9 (2022) 118, arXiv:2107.02157): 19 objects x
(pT, eta, phi) = 57 features, in the slot order MET, 4 e/gamma, 4 muons, 10 jets (each class pT-ordered,
zero-padded; MET has eta = 0). Each event also keeps the transverse energies of a coarse calorimeter-region
grid (``CALO_SHAPE`` = 18 phi x 14 eta regions over |eta| < 3, like the CMS Level-1 regions CICADA reads),
stored sparsely (region index, ET in 0.5 GeV units) and turned into an image at load time.

Detector model (generator level, no pile-up; every number is in the constants below and in the file's
metadata):

- e/gamma: final-state electrons and photons, |eta| < 3.0, isolated (scalar pT sum of other visible
  particles within Delta R < 0.3 below ``EG_ISOLATION`` x pT), pT smeared by 5% (+) 20%/sqrt(pT), eta/phi
  by 0.02; kept above 3 GeV.
- muons: final-state muons, |eta| < 2.1, pT smeared by 15%, eta/phi by 0.02; kept above 3 GeV.
- jets: anti-kT R = 0.4 (FastJet) on the other visible final-state particles with |eta| < 4, pT smeared by
  10% (+) 100%/sqrt(pT); kept above 15 GeV.
- MET: minus the vector pT sum of all visible particles with |eta| < 4.9, each component smeared by
  0.5 sqrt(sum ET) GeV.
- calorimeter regions: visible particles except muons, |eta| < 3; region ET smeared by 10%, a region
  keeps its ET when it is at least 1 GeV.

Selection (as ADC2021): at least one e/gamma or muon object above 23 GeV — for every process except QCD
multijets, whose rate through that filter comes from heavy-flavour decays and fakes and is out of reach of
generation here (about 1 event in 10^3 to 10^4); QCD events need only their pT-hat floor. The Standard
Model mixture is made with ADC2021's cocktail fractions (W 59.2%, QCD 33.8%, Z 6.7%, ttbar 0.3%), so the
sample is unweighted and its composition is the published one (see PROVENANCE.md for what that implies).

Run ``python -m fastml.data.anomaly --sm N --per-signal M --out FILE`` (or ``fastml data generate-anomaly``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .jets import generator_versions, require_generators
from .table import Table

#: Trigger-object slots (ADC2021 order) and how many of each class.
OBJECT_SLOTS: tuple[tuple[str, int], ...] = (("met", 1), ("eg", 4), ("mu", 4), ("jet", 10))
N_OBJECTS: int = sum(n for _, n in OBJECT_SLOTS)
OBJECT_FIELDS: tuple[str, ...] = ("pt", "eta", "phi")
#: Feature names of the flattened (events, 57) table: met_pt, met_eta, met_phi, eg1_pt, ...
OBJECT_FEATURES: tuple[str, ...] = tuple(
    f"{name}{'' if n == 1 else k + 1}_{f}" for name, n in OBJECT_SLOTS for k in range(n) for f in OBJECT_FIELDS
)
#: ADC2021 class ids of the slots (1 MET, 2 electron, 3 muon, 4 jet) as its files store them.
ADC_CLASS_IDS: tuple[int, ...] = tuple(cid for cid, (_, n) in enumerate(OBJECT_SLOTS, start=1) for _ in range(n))

#: Calorimeter-region grid: (phi regions, eta regions) over the full phi circle and |eta| < CALO_ABS_ETA.
CALO_SHAPE: tuple[int, int] = (18, 14)
CALO_ABS_ETA: float = 3.0
CALO_LSB_GEV: float = 0.5
CALO_MIN_ET: float = 1.0
CALO_RESOLUTION: float = 0.10

EG_ABS_ETA: float = 3.0
EG_ISOLATION: float = 0.3
EG_ISO_DR: float = 0.3
MU_ABS_ETA: float = 2.1
LEPTON_PT_MIN: float = 3.0
JET_R: float = 0.4
JET_ABS_ETA: float = 4.0
JET_PT_MIN: float = 15.0
MET_ABS_ETA: float = 4.9
#: ADC2021's pre-filter: at least one e/gamma or muon object above this pT.
LEPTON_FILTER_PT: float = 23.0

#: Shared Pythia settings: 13 TeV pp, no multi-parton interactions (no underlying event; no pile-up either).
COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:eCM = 13000.",
    "PartonLevel:MPI = off",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Print:quiet = on",
)


@dataclass(frozen=True)
class Process:
    """One generated process: Pythia settings, whether the lepton filter applies, and its SM fraction."""

    settings: tuple[str, ...]
    lepton_filter: bool = True
    sm_fraction: float = 0.0
    summary: str = ""


#: Standard Model processes and their ADC2021 cocktail fractions.
SM_PROCESSES: dict[str, Process] = {
    "w_lnu": Process(
        ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
        sm_fraction=0.592, summary="W -> l nu (l = e, mu, tau)",
    ),
    "qcd": Process(
        ("HardQCD:all = on", "PhaseSpace:pTHatMin = 30."),
        lepton_filter=False, sm_fraction=0.338, summary="QCD 2 -> 2, pT-hat > 30 GeV, no lepton filter",
    ),
    "z_ll": Process(
        ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 11 13 15", "PhaseSpace:mHatMin = 50."),
        sm_fraction=0.067, summary="Z/gamma* -> l l (l = e, mu, tau), m > 50 GeV",
    ),
    "ttbar": Process(("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"), sm_fraction=0.003, summary="ttbar, all decays"),
}
#: Beyond-SM signals (each passes the lepton filter, as ADC2021's signals do).
SIGNAL_PROCESSES: dict[str, Process] = {
    "leptoquark": Process(
        ("LeptoQuark:all = on", "42:m0 = 200.", "42:0:products = 5 -15"),
        summary="scalar leptoquark pair, m = 200 GeV, LQ -> b tau",
    ),
    "h2_tautau": Process(
        ("Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", "35:m0 = 200.", "35:onMode = off", "35:onIfMatch = 15 -15"),
        summary="heavy neutral scalar H (gg -> H), m = 200 GeV, H -> tau tau",
    ),
    "zprime_ll": Process(
        (
            "NewGaugeBoson:ffbar2gmZZprime = on", "Zprime:gmZmode = 3", "32:m0 = 500.",
            "32:onMode = off", "32:onIfAny = 11 13 15",
        ),
        summary="Z' (SM-like couplings, Z' only), m = 500 GeV, Z' -> l l (l = e, mu, tau)",
    ),
}
ALL_PROCESSES: dict[str, Process] = {**SM_PROCESSES, **SIGNAL_PROCESSES}
#: Events per generation task; fixing it (not the worker count) makes the output reproducible.
CHUNK_EVENTS: int = 1000


@dataclass(frozen=True)
class EventSample:
    """Trigger objects, calorimeter-region deposits and labels of generated (or read) events.

    Guarantees: ``objects`` (n, 19, 3) float32 (pT, eta, phi) in ADC2021 slot order; ``y`` (n,) int64,
    0 = Standard Model, i = ``class_names[i]``; ``process`` (n,) int64 index into ``process_names`` (the
    generated process of each event; -1 where unknown, e.g. a user's ADC2021 file); ``calo_count`` (n,)
    deposits per event, ``calo_index`` / ``calo_et`` the deposits (region index phi * 14 + eta, ET in
    ``CALO_LSB_GEV`` units) in event order — empty for files without calorimeter data.
    """

    objects: np.ndarray
    y: np.ndarray
    process: np.ndarray
    calo_count: np.ndarray
    calo_index: np.ndarray
    calo_et: np.ndarray
    class_names: tuple[str, ...]
    process_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return int(self.y.shape[0])

    @property
    def has_calo(self) -> bool:
        return int(self.calo_count.shape[0]) == self.n_events and self.calo_et.size > 0

    def features(self) -> np.ndarray:
        """(n, 57) float32: the objects flattened in ADC2021 order (met_pt, met_eta, met_phi, eg1_pt, ...)."""
        return self.objects.reshape(self.n_events, N_OBJECTS * len(OBJECT_FIELDS)).astype(np.float32)

    def calo_images(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, 18, 14) float32 region ET in GeV, built from the sparse deposits (for ``rows`` if given)."""
        if not self.has_calo:
            raise DataError("this event sample has no calorimeter deposits (calo_count/calo_index/calo_et)")
        starts = np.concatenate([[0], np.cumsum(self.calo_count, dtype=np.int64)])
        rows = np.arange(self.n_events) if rows is None else np.asarray(rows)
        flat = np.zeros((rows.size, CALO_SHAPE[0] * CALO_SHAPE[1]), np.float32)
        counts = self.calo_count[rows].astype(np.int64)
        # Gather every selected event's deposits at once: positions start..start+count per row.
        pos = np.repeat(starts[rows] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        flat[np.repeat(np.arange(rows.size), counts), self.calo_index[pos].astype(np.int64)] = (
            self.calo_et[pos].astype(np.float32) * CALO_LSB_GEV
        )
        return flat.reshape(rows.size, *CALO_SHAPE)


def _wrap(phi: np.ndarray) -> np.ndarray:
    return np.mod(phi + np.pi, 2.0 * np.pi) - np.pi


def _top(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, n: int) -> np.ndarray:
    """(n, 3) pT-ordered (pT, eta, phi) of the ``n`` leading objects, zero-padded."""
    out = np.zeros((n, 3))
    order = np.argsort(-pt, kind="stable")[:n]
    out[: order.size] = np.stack([pt[order], eta[order], phi[order]], axis=1)
    return out


def reduce_event(
    pid: np.ndarray, p4: np.ndarray, rng: np.random.Generator, fastjet: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level-1-like objects and calorimeter regions of one event's visible final-state particles.

    ``pid`` (m,) PDG ids, ``p4`` (m, 4) px, py, pz, E. Returns (objects (19, 3), region indices, region ET in
    LSB units). Uses ``rng`` for every smearing, in a fixed order, so a seed fixes the result.
    """
    pt = np.hypot(p4[:, 0], p4[:, 1])
    eta = np.arcsinh(p4[:, 2] / np.maximum(pt, 1e-9))
    phi = np.arctan2(p4[:, 1], p4[:, 0])
    apid = np.abs(pid)
    used = np.zeros(pid.size, bool)
    # e/gamma: isolated electrons/photons.
    cand = np.flatnonzero(((apid == 11) | (apid == 22)) & (np.abs(eta) < EG_ABS_ETA) & (pt > LEPTON_PT_MIN))
    eg_keep = []
    for k in cand:
        dr = np.hypot(eta - eta[k], _wrap(phi - phi[k]))
        iso = pt[(dr < EG_ISO_DR)].sum() - pt[k]
        if iso < EG_ISOLATION * pt[k]:
            eg_keep.append(k)
    eg_keep_a = np.array(eg_keep, dtype=np.int64)
    eg_pt = pt[eg_keep_a] * (1.0 + rng.normal(size=eg_keep_a.size) * np.hypot(0.05, 0.2 / np.sqrt(pt[eg_keep_a])))
    eg_eta = eta[eg_keep_a] + rng.normal(scale=0.02, size=eg_keep_a.size)
    eg_phi = _wrap(phi[eg_keep_a] + rng.normal(scale=0.02, size=eg_keep_a.size))
    used[eg_keep_a] = True
    # Muons.
    mu = np.flatnonzero((apid == 13) & (np.abs(eta) < MU_ABS_ETA) & (pt > LEPTON_PT_MIN))
    mu_pt = pt[mu] * np.maximum(1.0 + 0.15 * rng.normal(size=mu.size), 0.0)
    mu_eta = eta[mu] + rng.normal(scale=0.02, size=mu.size)
    mu_phi = _wrap(phi[mu] + rng.normal(scale=0.02, size=mu.size))
    used[mu] = True
    # Jets from everything else within |eta| < 4.
    jet_in = np.flatnonzero(~used & (np.abs(eta) < JET_ABS_ETA))
    inputs = [fastjet.PseudoJet(*(float(v) for v in p4[k])) for k in jet_in]
    jets = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)).inclusive_jets(5.0)
    j_pt = np.array([j.pt() for j in jets])
    j_eta = np.array([j.eta() for j in jets])
    j_phi = np.array([j.phi_std() for j in jets])
    j_pt = j_pt * np.maximum(1.0 + rng.normal(size=j_pt.size) * np.hypot(0.10, 1.0 / np.sqrt(np.maximum(j_pt, 1.0))), 0)
    # MET from all visible particles in the detector.
    inside = np.abs(eta) < MET_ABS_ETA
    mex, mey = -p4[inside, 0].sum(), -p4[inside, 1].sum()
    sigma = 0.5 * np.sqrt(pt[inside].sum())
    mex, mey = mex + sigma * rng.normal(), mey + sigma * rng.normal()
    objects = np.zeros((N_OBJECTS, 3))
    objects[0] = (np.hypot(mex, mey), 0.0, np.arctan2(mey, mex))
    keep = eg_pt > LEPTON_PT_MIN
    objects[1:5] = _top(eg_pt[keep], eg_eta[keep], eg_phi[keep], 4)
    keep = mu_pt > LEPTON_PT_MIN
    objects[5:9] = _top(mu_pt[keep], mu_eta[keep], mu_phi[keep], 4)
    keep = (j_pt > JET_PT_MIN) & (np.abs(j_eta) < JET_ABS_ETA)
    objects[9:19] = _top(j_pt[keep], j_eta[keep], j_phi[keep], 10)
    # Calorimeter regions: all visible non-muons within |eta| < 3.
    calo = (apid != 13) & (np.abs(eta) < CALO_ABS_ETA)
    iphi = np.clip(((phi[calo] + np.pi) / (2 * np.pi) * CALO_SHAPE[0]).astype(np.int64), 0, CALO_SHAPE[0] - 1)
    ieta = np.clip(((eta[calo] + CALO_ABS_ETA) / (2 * CALO_ABS_ETA) * CALO_SHAPE[1]).astype(np.int64), 0,
                   CALO_SHAPE[1] - 1)
    region_et = np.bincount(iphi * CALO_SHAPE[1] + ieta, weights=pt[calo], minlength=CALO_SHAPE[0] * CALO_SHAPE[1])
    region_et = region_et * np.maximum(1.0 + CALO_RESOLUTION * rng.normal(size=region_et.size), 0.0)
    index = np.flatnonzero(region_et >= CALO_MIN_ET)
    et = np.minimum(np.floor(region_et[index] / CALO_LSB_GEV), np.iinfo(np.uint16).max)
    return objects, index.astype(np.uint8), et.astype(np.uint16)


def passes_lepton_filter(objects: np.ndarray) -> bool:
    """ADC2021's pre-filter: an e/gamma or muon object above ``LEPTON_FILTER_PT``."""
    return bool(objects[1:9, 0].max() > LEPTON_FILTER_PT)


def _generate_chunk(task: tuple[str, int, int]) -> tuple[str, dict[str, np.ndarray], dict[str, int]]:
    """Generate ``n`` selected events of process ``name`` with Pythia seed ``seed`` (runs in a worker)."""
    name, n, seed = task
    pythia8mc, fastjet = require_generators("event generation")
    proc = ALL_PROCESSES[name]
    pythia = pythia8mc.Pythia("", False)
    for line in (*COMMON_SETTINGS, *proc.settings, "Random:setSeed = on", f"Random:seed = {seed}"):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for process {name!r}")
    rng = np.random.default_rng(seed)  # detector smearing; seeded from the same task seed
    objects, counts, index, et = [], [], [], []
    tally = {"events": 0, "failed_events": 0, "passed": 0}
    while len(objects) < n:
        if not pythia.next():
            tally["failed_events"] += 1
            continue
        tally["events"] += 1
        visible = [p for p in pythia.event if p.isFinal() and p.isVisible()]
        pid = np.array([p.id() for p in visible], dtype=np.int64)
        p4 = np.array([[p.px(), p.py(), p.pz(), p.e()] for p in visible]).reshape(-1, 4)
        obj, idx, val = reduce_event(pid, p4, rng, fastjet)
        if proc.lepton_filter and not passes_lepton_filter(obj):
            continue
        tally["passed"] += 1
        objects.append(obj)
        counts.append(idx.size)
        index.append(idx)
        et.append(val)
    sigma_mb = float(pythia.infoPython().sigmaGen())
    tally["sigma_gen_fb"] = sigma_mb * 1e12  # type: ignore[assignment]
    arrays = {
        "objects": np.array(objects, dtype=np.float32),
        "calo_count": np.array(counts, dtype=np.uint16),
        "calo_index": np.concatenate(index).astype(np.uint8),
        "calo_et": np.concatenate(et).astype(np.uint16),
    }
    return name, arrays, tally


def _chunk_sizes(total: int) -> list[int]:
    return [CHUNK_EVENTS] * (total // CHUNK_EVENTS) + ([total % CHUNK_EVENTS] if total % CHUNK_EVENTS else [])


def sm_counts(n_sm: int) -> dict[str, int]:
    """Events per SM process for ``n_sm`` SM events in the cocktail fractions (largest remainders)."""
    names = list(SM_PROCESSES)
    total = sum(p.sm_fraction for p in SM_PROCESSES.values())
    exact = np.array([SM_PROCESSES[p].sm_fraction for p in names]) * n_sm / total
    base = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - base), kind="stable")[: n_sm - base.sum()]:
        base[i] += 1
    return dict(zip(names, base.tolist(), strict=True))


def _tasks(n_sm: int, per_signal: int, seed: int) -> list[tuple[str, int, int]]:
    """(process, events, pythia seed) per chunk; seeds derived from ``seed`` reproducibly."""
    plan = [(name, size) for name, total in sm_counts(n_sm).items() for size in _chunk_sizes(total)]
    plan += [(name, size) for name in SIGNAL_PROCESSES for size in _chunk_sizes(per_signal)]
    # Pythia accepts seeds in [1, 900 000 000]; SeedSequence gives well-separated distinct streams.
    raw = np.random.SeedSequence(seed).generate_state(len(plan), dtype=np.uint64) % 899_999_999 + 1
    return [(name, size, int(s)) for (name, size), s in zip(plan, raw, strict=True)]


def _read_cached(
    tasks: Sequence[tuple[str, int, int]], cache: Path
) -> Iterator[tuple[int, tuple[str, dict[str, np.ndarray], dict[str, int]]]]:
    """(task index, result) of every task whose chunk file is in ``cache``."""
    for i, task in enumerate(tasks):
        part = cache / f"{task[0]}-{task[1]}-{task[2]}.npz"
        if part.exists():
            with np.load(part, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("objects", "calo_count", "calo_index", "calo_et")}
                yield i, (task[0], arrays, json.loads(str(data["tally"])))


def _cocktail_cut(tasks: Sequence[tuple[str, int, int]], done: list[int],
                  results: dict[int, tuple[str, dict[str, np.ndarray], dict[str, int]]]) -> dict[int, int]:
    """Rows to keep per finished task so the SM processes stand in the cocktail fractions (the largest such
    subset of what was generated); signal chunks are kept whole."""
    have: dict[str, int] = {}
    for i in done:
        have[results[i][0]] = have.get(results[i][0], 0) + results[i][1]["objects"].shape[0]
    fractions = {n: p.sm_fraction for n, p in SM_PROCESSES.items()}
    total = sum(fractions.values())
    n_sm = int(min(have.get(n, 0) * total / f for n, f in fractions.items()))
    want = sm_counts(n_sm)
    keep: dict[int, int] = {}
    for i in done:
        name, rows = results[i][0], results[i][1]["objects"].shape[0]
        if name in want:
            keep[i] = min(rows, want[name])
            want[name] -= keep[i]
        else:
            keep[i] = rows
    return keep


def _run_tasks(
    tasks: Sequence[tuple[str, int, int]], workers: int, cache: Path | None
) -> Iterator[tuple[int, tuple[str, dict[str, np.ndarray], dict[str, int]]]]:
    """Yield (task index, result) as tasks finish; results already in ``cache`` are read, new ones written."""
    todo = []
    for i, task in enumerate(tasks):
        part = cache / f"{task[0]}-{task[1]}-{task[2]}.npz" if cache else None
        if part is not None and part.exists():
            with np.load(part, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("objects", "calo_count", "calo_index", "calo_et")}
                yield i, (task[0], arrays, json.loads(str(data["tally"])))
        else:
            todo.append((i, task))
    # Every process advances at the same fraction of its chunks, so an interrupted run holds the cocktail's
    # proportions (the seeds belong to the tasks: the order of execution does not change the output).
    n_chunks: dict[str, int] = {}
    for task in tasks:
        n_chunks[task[0]] = n_chunks.get(task[0], 0) + 1
    rank: dict[str, int] = {}
    keyed = []
    for i, task in todo:
        rank[task[0]] = rank.get(task[0], 0) + 1
        keyed.append(((rank[task[0]]) / n_chunks[task[0]], i, task))
    todo = [(i, task) for _, i, task in sorted(keyed)]

    def store(i: int, result: tuple[str, dict[str, np.ndarray], dict[str, int]]) -> None:
        if cache is None:
            return
        task = tasks[i]
        tmp = cache / f".{task[0]}-{task[1]}-{task[2]}.tmp.npz"
        with tmp.open("wb") as fh:
            np.savez(fh, tally=np.array(json.dumps(result[2])), **result[1])
        tmp.replace(cache / f"{task[0]}-{task[1]}-{task[2]}.npz")  # atomic: a killed run leaves no half part

    if workers <= 1:
        for i, task in todo:
            result = _generate_chunk(task)
            store(i, result)
            yield i, result
        return
    import multiprocessing as mp

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, result in pool.imap_unordered(_indexed_chunk, todo):
            store(i, result)
            yield i, result


def _indexed_chunk(
    item: tuple[int, tuple[str, int, int]],
) -> tuple[int, tuple[str, dict[str, np.ndarray], dict[str, int]]]:
    return item[0], _generate_chunk(item[1])


def generate_events(
    n_sm: int, per_signal: int, seed: int = 1, workers: int = 2, progress: bool = True,
    cache_dir: str | Path | None = None, cached_only: bool = False,
) -> EventSample:
    """Generate ``n_sm`` Standard Model events (ADC2021 cocktail) and ``per_signal`` events of each signal.

    Guarantees: rows shuffled with ``seed``; identical output for identical (n_sm, per_signal, seed, package
    versions) whatever ``workers`` is; with ``cache_dir`` finished chunks are kept there, so an interrupted
    run resumes. ``cached_only``: generate nothing, assemble the chunks already in ``cache_dir``, with the
    Standard Model processes cut to the cocktail fractions (the largest such subset; recorded in
    ``metadata["partial"]``). ``metadata`` records settings, seeds, detector model, filter efficiencies,
    cross sections, versions and wall time. Raises DataError (one line) when pythia8mc/fastjet are not installed.
    """
    if n_sm < 1 or per_signal < 1:
        raise ValueError(f"n_sm and per_signal must be >= 1, got {n_sm}, {per_signal}")
    tasks = _tasks(n_sm, per_signal, seed)
    cache = Path(cache_dir) if cache_dir is not None else None
    if cached_only:
        if cache is None:
            raise ValueError("cached_only needs cache_dir")
        results = {i: r for i, r in _read_cached(tasks, cache)}
        if not results:
            raise DataError(f"{cache}: no finished chunks of this plan (n_sm={n_sm}, per_signal={per_signal}, "
                            f"seed={seed})")
        return _assemble(tasks, results, seed, 0, float("nan"))
    require_generators("event generation")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    start = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(t[1] for t in tasks), unit="event", desc="generating events")
    results: dict[int, tuple[str, dict[str, np.ndarray], dict[str, int]]] = {}
    for i, result in _run_tasks(tasks, workers, cache):
        results[i] = result
        if bar is not None:
            bar.update(result[1]["objects"].shape[0])
    if bar is not None:
        bar.close()
    wall = time.time() - start
    return _assemble(tasks, results, seed, workers, wall)


def _assemble(
    tasks: Sequence[tuple[str, int, int]], results: dict[int, tuple[str, dict[str, np.ndarray], dict[str, int]]],
    seed: int, workers: int, wall: float,
) -> EventSample:
    """One shuffled EventSample from the chunk results (task order fixes the row order before shuffling)."""
    process_names = tuple(ALL_PROCESSES)
    class_names = ("sm", *SIGNAL_PROCESSES)
    done = [i for i in range(len(tasks)) if i in results]
    partial = len(done) < len(tasks)
    if partial:  # cut every chunk to what the cocktail fractions allow (chunks are unordered: take leading rows)
        keep = _cocktail_cut(tasks, done, results)
        results = {i: (results[i][0], _cut_chunk(results[i][1], keep[i]), results[i][2]) for i in done}
        done = [i for i in done if keep[i] > 0]
    objects = np.concatenate([results[i][1]["objects"] for i in done])
    process = np.concatenate(
        [np.full(results[i][1]["objects"].shape[0], process_names.index(results[i][0])) for i in done]
    )
    y = np.array([class_names.index(process_names[p]) if process_names[p] in SIGNAL_PROCESSES else 0
                  for p in process])
    counts = np.concatenate([results[i][1]["calo_count"] for i in done])
    index = np.concatenate([results[i][1]["calo_index"] for i in done])
    et = np.concatenate([results[i][1]["calo_et"] for i in done])
    order = np.random.default_rng(seed).permutation(y.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    # Reorder the sparse deposits with the events.
    pos = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in order]) if order.size else np.zeros(0, int)
    tallies: dict[str, dict[str, float]] = {}
    for i in done:
        agg = tallies.setdefault(results[i][0], {})
        for key, val in results[i][2].items():
            if key == "sigma_gen_fb":  # cross sections: mean over chunks (each chunk's own estimate)
                agg.setdefault("_sigma", []).append(val)  # type: ignore[union-attr]
            else:
                agg[key] = agg.get(key, 0) + val
    for agg in tallies.values():
        sig = agg.pop("_sigma", [])
        agg["sigma_gen_fb"] = float(np.mean(sig)) if sig else float("nan")  # type: ignore[arg-type]
        agg["filter_efficiency"] = agg["passed"] / max(agg["events"], 1)
    meta: dict[str, Any] = {
        "source": "fastml.data.anomaly.generate_events (Pythia 8 + FastJet)",
        "reference": "layout of ADC2021 (arXiv:2107.02157, Sci. Data 9 (2022) 118)",
        "seed": seed,
        "workers": workers,
        "chunk_events": CHUNK_EVENTS,
        "tasks_done": len(done),
        "tasks_planned": len(tasks),
        "tasks": [{"process": n, "n_events": k, "pythia_seed": s} for n, k, s in tasks],
        "settings": {"common": list(COMMON_SETTINGS), **{n: list(p.settings) for n, p in ALL_PROCESSES.items()}},
        "processes": {
            n: {"summary": p.summary, "lepton_filter": p.lepton_filter, "sm_fraction": p.sm_fraction}
            for n, p in ALL_PROCESSES.items()
        },
        "detector": {
            "eg": f"e/gamma |eta|<{EG_ABS_ETA}, isolation sum pT(dR<{EG_ISO_DR}) < {EG_ISOLATION} pT, "
                  "sigma(pT)/pT = 5% (+) 20%/sqrt(pT), sigma(eta, phi) = 0.02, pT > 3 GeV",
            "mu": f"muons |eta|<{MU_ABS_ETA}, sigma(pT)/pT = 15%, sigma(eta, phi) = 0.02, pT > 3 GeV",
            "jet": f"anti-kT R={JET_R}, |eta|<{JET_ABS_ETA}, sigma(pT)/pT = 10% (+) 100%/sqrt(pT), "
                   f"pT > {JET_PT_MIN} GeV",
            "met": f"-sum pT of visible particles |eta|<{MET_ABS_ETA}, sigma(x, y) = 0.5 sqrt(sum ET) GeV",
            "calo": f"{CALO_SHAPE[0]} phi x {CALO_SHAPE[1]} eta regions, |eta|<{CALO_ABS_ETA}, no muons, "
                    f"ET smeared {CALO_RESOLUTION:.0%}, LSB {CALO_LSB_GEV} GeV, kept >= {CALO_MIN_ET} GeV",
            "lepton_filter": f"an e/gamma or muon object with pT > {LEPTON_FILTER_PT} GeV",
            "pileup": "none; multi-parton interactions off",
        },
        "counts": tallies,
        "rows_shuffled_with_seed": seed,
        "partial": (
            {"note": "assembled from the finished chunks of an interrupted run; SM processes cut to the cocktail "
                     "fractions", "events_per_process": {
                         n: int(sum(results[i][1]["objects"].shape[0] for i in done if results[i][0] == n))
                         for n in ALL_PROCESSES}}
            if partial else None
        ),
        "versions": generator_versions(),
        "wall_time_s": round(wall, 1),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return EventSample(
        objects=objects[order].astype(np.float32),
        y=y[order].astype(np.int64),
        process=process[order].astype(np.int64),
        calo_count=counts[order].astype(np.uint16),
        calo_index=index[pos].astype(np.uint8),
        calo_et=et[pos].astype(np.uint16),
        class_names=class_names,
        process_names=process_names,
        metadata=meta,
    )


def _cut_chunk(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """The first ``rows`` events of a chunk's arrays (deposits cut with them)."""
    n_dep = int(arrays["calo_count"][:rows].astype(np.int64).sum())
    return {"objects": arrays["objects"][:rows], "calo_count": arrays["calo_count"][:rows],
            "calo_index": arrays["calo_index"][:n_dep], "calo_et": arrays["calo_et"][:n_dep]}


def save_events(sample: EventSample, path: str | Path) -> None:
    """Write ``sample`` as compressed .npz (objects float16: 3 significant digits are below the smearing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(
            fh,
            objects=sample.objects.astype(np.float16),
            y=sample.y.astype(np.int8),
            process=sample.process.astype(np.int8),
            calo_count=sample.calo_count.astype(np.uint16),
            calo_index=sample.calo_index.astype(np.uint8),
            calo_et=sample.calo_et.astype(np.uint16),
            class_names=np.array(sample.class_names, dtype=str),
            process_names=np.array(sample.process_names, dtype=str),
            metadata=np.array(json.dumps(sample.metadata, sort_keys=True)),
        )


def load_events(path: str | Path) -> EventSample:
    """Read an EventSample written by :func:`save_events`; no pickles. Raises DataError (one line) if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            sample = EventSample(
                objects=data["objects"].astype(np.float32),
                y=data["y"].astype(np.int64),
                process=data["process"].astype(np.int64),
                calo_count=data["calo_count"].astype(np.int64),
                calo_index=data["calo_index"],
                calo_et=data["calo_et"],
                class_names=tuple(str(c) for c in data["class_names"]),
                process_names=tuple(str(c) for c in data["process_names"]),
                metadata=json.loads(str(data["metadata"])),
            )
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        why = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: cannot read this event sample ({type(exc).__name__}: {why}); expected a file "
                        "written by fastml data generate-anomaly") from None
    if sample.objects.shape[1:] != (N_OBJECTS, len(OBJECT_FIELDS)) or sample.objects.shape[0] != sample.n_events:
        raise DataError(f"{path}: 'objects' has shape {sample.objects.shape}, expected ({sample.n_events}, "
                        f"{N_OBJECTS}, {len(OBJECT_FIELDS)})")
    if sample.calo_count.sum() != sample.calo_index.size or sample.calo_index.size != sample.calo_et.size:
        raise DataError(f"{path}: calo_count sums to {int(sample.calo_count.sum())} deposits, but calo_index/"
                        f"calo_et hold {sample.calo_index.size}/{sample.calo_et.size}; expected them equal")
    return sample


#: ADC2021 files: signal file stem -> class name (files not listed keep their stem as the class name).
ADC2021_SIGNALS: dict[str, str] = {
    "Ato4l_lepFilter_13TeV": "ato4l",
    "hChToTauNu_13TeV_PU20": "hch_taunu",
    "hToTauTau_13TeV_PU20": "h_tautau",
    "leptoquark_LOWMASS_lepFilter_13TeV": "leptoquark",
}
#: At most this many background events are read from ADC2021's 13 M-event training file (memory).
ADC2021_MAX_BACKGROUND: int = 2_000_000


def load_adc2021(folder: str | Path, max_background: int = ADC2021_MAX_BACKGROUND) -> EventSample:
    """A user's copy of the ADC2021 data: ``background*.h5`` (SM) and every other ``*.h5`` (one signal each).

    Each file holds ``Particles`` (events, 19, 4) = (pT, eta, phi, class id) in the same slot order as
    fastml's samples; the class column is dropped. There is no calorimeter grid in ADC2021.
    """
    import h5py

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data.source adc2021:{folder}: no such folder (expected the folder holding ADC2021's "
                        "background_for_training.h5 and the signal .h5 files)")
    files = sorted(folder.glob("*.h5"))
    background = [f for f in files if f.name.startswith("background")]
    signals = [f for f in files if not f.name.startswith(("background", "BlackBox"))]
    if len(background) != 1 or not signals:
        raise DataError(f"{folder}: expected one background*.h5 and at least one signal .h5 (ADC2021 layout), "
                        f"found {len(background)} background and {len(signals)} signal files")
    objects, labels = [], []
    for label, f in enumerate([background[0], *signals]):
        try:
            with h5py.File(f, "r") as h5:
                if "Particles" not in h5:
                    raise DataError(f"{f}: no dataset 'Particles' (has: {', '.join(h5)}); expected ADC2021's "
                                    f"(events, {N_OBJECTS}, 4) array")
                ds = h5["Particles"]
                if ds.ndim != 3 or ds.shape[1:] != (N_OBJECTS, 4):
                    raise DataError(f"{f}: 'Particles' has shape {ds.shape}, expected (events, {N_OBJECTS}, 4)")
                rows = ds[: max_background if label == 0 else ds.shape[0], :, :3]
        except OSError as exc:
            raise DataError(f"{f}: cannot read this HDF5 file ({' '.join(str(exc).split())[:160]})") from None
        objects.append(np.asarray(rows, np.float32))
        labels.append(np.full(rows.shape[0], label, np.int64))
    names = ("sm", *(ADC2021_SIGNALS.get(f.stem, f.stem) for f in signals))
    n = sum(len(o) for o in objects)
    return EventSample(
        objects=np.concatenate(objects), y=np.concatenate(labels), process=np.full(n, -1, np.int64),
        calo_count=np.zeros(0, np.int64), calo_index=np.zeros(0, np.uint8), calo_et=np.zeros(0, np.uint16),
        class_names=names, process_names=(), metadata={"source": f"adc2021:{folder}",
                                                       "files": [f.name for f in [background[0], *signals]]},
    )


#: Feature names of the calorimeter image's last axis (eta regions); rows are phi regions.
CALO_FEATURES: tuple[str, ...] = tuple(f"eta{i}" for i in range(CALO_SHAPE[1]))


def event_table(sample: EventSample, view: str, source: str) -> Any:
    """A ``Table`` of ``sample``: ``view`` "objects" (events, 57) or "calo" (events, 18, 14) region ET in GeV.

    Labels: 0 = "sm", i = signal ``class_names[i]``; the metadata asks the split to fit the input scaling on
    Standard Model events only, and keeps the per-event generated process (``process``) for the report.
    """

    if view == "calo":
        x, names = sample.calo_images(), CALO_FEATURES
    else:
        x, names = sample.features(), OBJECT_FEATURES
    meta = {**sample.metadata, "source": source, "task": "anomaly_detection", "scaler_fit_classes": [0],
            "process_names": list(sample.process_names)}
    return Table(x, sample.y, names, sample.class_names, meta)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: generate the SM cocktail and the signals and save them as .npz."""
    parser = argparse.ArgumentParser(prog="python -m fastml.data.anomaly", description=__doc__.splitlines()[0])
    parser.add_argument("--sm", type=int, required=True, help="Standard Model events (ADC2021 cocktail)")
    parser.add_argument("--per-signal", type=int, required=True, help="events per BSM signal")
    parser.add_argument("--out", type=Path, required=True, help="output .npz file")
    parser.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep finished chunks here (resumable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--from-cache", action="store_true",
                        help="generate nothing: assemble the chunks already in --cache-dir (cut to the cocktail)")
    args = parser.parse_args(argv)
    if args.sm < 1 or args.per_signal < 1:
        parser.exit(2, "error: --sm and --per-signal must be >= 1\n")
    if args.from_cache and args.cache_dir is None:
        parser.exit(2, "error: --from-cache needs --cache-dir\n")
    try:
        sample = generate_events(args.sm, args.per_signal, seed=args.seed, workers=args.workers,
                                 progress=not args.no_progress, cache_dir=args.cache_dir,
                                 cached_only=args.from_cache)
    except DataError as exc:
        parser.exit(2, f"error: {exc}\n")
    save_events(sample, args.out)
    print(f"wrote {sample.n_events} events to {args.out} in {sample.metadata['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
