"""Particle-level jet data: each jet's leading constituents, stored compactly, with features derived at load time.

Storage (:class:`ConstituentSample`, ``.npz``): per particle only ``pT/pT_jet``, ``eta - eta_jet``,
``phi - phi_jet`` (float16), a particle-type code and the charge (int8); per jet its (pT, eta, phi, mass,
energy) and the 16 high-level features. Everything a Deep Sets / interaction-network (JEDI-style) tagger
reads — log pT, log E, Delta R, ... — is derived from these by :func:`particle_table`, so the shipped
file stays small and derived features cannot disagree with the stored ones.

Padding convention (shared by :class:`~fastml.data.Scaler`): a padded particle has every feature exactly
0, before and after scaling, and real particles come first (pT-descending).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .table import JET_FEATURES, Table

#: Per-particle kinematics stored in ``ConstituentSample.particles`` (last axis), relative to the jet axis.
STORED_PARTICLE_FIELDS: tuple[str, ...] = ("pt_rel", "deta", "dphi")
#: Per-jet kinematics stored in ``ConstituentSample.jet``.
JET_FIELDS: tuple[str, ...] = ("pt", "eta", "phi", "mass", "energy")
#: Particle-type codes (index = int8 code); 0 marks padding. A generator-level particle-flow classification.
PARTICLE_TYPES: tuple[str, ...] = ("none", "photon", "electron", "muon", "charged_hadron", "neutral_hadron")

#: Per-particle features :func:`particle_table` can derive, with their meaning.
PARTICLE_FEATURES: dict[str, str] = {
    "pt_rel": "pT / pT_jet",
    "deta": "eta - eta_jet (pseudorapidity)",
    "dphi": "phi - phi_jet, wrapped to [-pi, pi)",
    "delta_r": "sqrt(deta^2 + dphi^2)",
    "log_pt": "log(pT / GeV)",
    "log_e": "log(E / GeV)",
    "log_pt_rel": "log(pT / pT_jet)",
    "log_e_rel": "log(E / E_jet)",
    "pt": "pT in GeV",
    "e": "E in GeV",
    "eta": "pseudorapidity",
    "phi": "azimuth, in [-pi, pi)",
    "px": "p_x in GeV",
    "py": "p_y in GeV",
    "pz": "p_z in GeV",
    "charge": "electric charge (-1, 0, +1)",
    "is_photon": "1 for photons",
    "is_electron": "1 for electrons",
    "is_muon": "1 for muons",
    "is_charged_hadron": "1 for charged hadrons",
    "is_neutral_hadron": "1 for neutral hadrons",
}
#: Features used when the recipe names none: kinematics every source (also the published files) has.
DEFAULT_PARTICLE_FEATURES: tuple[str, ...] = (
    "pt_rel", "deta", "dphi", "delta_r", "log_pt", "log_e", "log_pt_rel", "log_e_rel",
)
#: Features that need the particle identity, which the published hls4ml particle files do not have.
PID_FEATURES: frozenset[str] = frozenset(
    {"charge", "is_photon", "is_electron", "is_muon", "is_charged_hadron", "is_neutral_hadron"}
)


@dataclass(frozen=True)
class ConstituentSample:
    """Jets with their leading ``n_particles`` constituents, as stored on disk.

    Guarantees (checked on construction): ``particles`` (n, N, 3) in ``STORED_PARTICLE_FIELDS`` order,
    ``particle_type``/``particle_charge`` (n, N) int8, ``jet`` (n, 5) in ``JET_FIELDS`` order,
    ``n_constituents`` (n,) the jet's full constituent count, ``hlf`` (n, 16) in ``JET_FEATURES`` order or
    None (a file may leave them out when another file holds them, see ``metadata["hlf"]``), ``y`` (n,)
    int64; padded particles are all zero and have type 0.
    """

    particles: np.ndarray
    particle_type: np.ndarray
    particle_charge: np.ndarray
    jet: np.ndarray
    n_constituents: np.ndarray
    hlf: np.ndarray | None
    y: np.ndarray
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        expected = {
            "particles": (n, self.particles.shape[1], len(STORED_PARTICLE_FIELDS)),
            "particle_type": (n, self.particles.shape[1]),
            "particle_charge": (n, self.particles.shape[1]),
            "jet": (n, len(JET_FIELDS)),
            "n_constituents": (n,),
            "hlf": (n, len(JET_FEATURES)),
        }
        for name, shape in expected.items():
            if getattr(self, name) is None and name == "hlf":
                continue
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")

    @property
    def n_particles(self) -> int:
        """Constituents kept per jet (the padded length)."""
        return int(self.particles.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """(n, N) bool: True for real particles, False for padding."""
        return self.particle_type != 0


#: Smallest positive float16 (2**-24): the floor of a real particle's stored pT/pT_jet.
PT_REL_FLOOR: float = float(np.finfo(np.float16).smallest_subnormal)


def to_float16_particles(particles: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``particles`` (.., 3) as float16, with a real particle's pT/pT_jet at least ``PT_REL_FLOOR``.

    A very soft photon (pT below ~60 keV in a 1 TeV jet) would otherwise round to pT = 0 in float16, and a
    real particle with pT = 0 has log pT = -inf and could pass for padding.
    """
    out = np.asarray(particles, dtype=np.float64).copy()
    out[..., 0] = np.where(real, np.maximum(out[..., 0], PT_REL_FLOOR), out[..., 0])
    return out.astype(np.float16)


def save_constituents(sample: ConstituentSample, path: str | Path) -> None:
    """Write ``sample`` as compressed ``.npz`` (no pickles) that :func:`load_constituents` reads.

    ``hlf`` is written only when the sample has it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "particles": np.asarray(sample.particles, dtype=np.float16),
        "particle_type": np.asarray(sample.particle_type, dtype=np.int8),
        "particle_charge": np.asarray(sample.particle_charge, dtype=np.int8),
        "jet": np.asarray(sample.jet, dtype=np.float32),
        "n_constituents": np.asarray(sample.n_constituents, dtype=np.int16),
        "y": np.asarray(sample.y, dtype=np.int8),  # a handful of classes: int8 saves space, widened on load
        "class_names": np.array(sample.class_names, dtype=str),
        "metadata": np.array(json.dumps(sample.metadata, sort_keys=True)),
    }
    if sample.hlf is not None:
        arrays["hlf"] = np.asarray(sample.hlf, dtype=np.float32)
    with path.open("wb") as fh:  # a file object stops numpy from appending ".npz" to other suffixes
        np.savez_compressed(fh, **arrays)


_SAMPLE_KEYS = ("particles", "particle_type", "particle_charge", "jet", "n_constituents", "y", "class_names",
                "metadata")


def load_constituents(path: str | Path) -> ConstituentSample:
    """Read a file written by :func:`save_constituents`; raises DataError (one line) if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _SAMPLE_KEYS if k not in data.files]
            if missing:
                raise DataError(f"{path}: not a jet-constituents file, no array {missing[0]!r}")
            return ConstituentSample(
                particles=data["particles"],
                particle_type=data["particle_type"],
                particle_charge=data["particle_charge"],
                jet=data["jet"],
                n_constituents=data["n_constituents"],
                hlf=data["hlf"] if "hlf" in data.files else None,
                y=data["y"].astype(np.int64),
                class_names=tuple(str(s) for s in data["class_names"]),
                metadata=json.loads(str(data["metadata"])),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read jet-constituents file {path}: {' '.join(str(exc).split())}") from exc


def check_particle_features(features: Sequence[str], source: str, has_pid: bool = True) -> tuple[str, ...]:
    """``features`` as a tuple, or DataError (one line) naming the first unknown/unavailable one."""
    for name in features:
        if name not in PARTICLE_FEATURES:
            raise DataError(
                f"{source}: data.particle_features: unknown feature {name!r}; expected some of "
                f"{', '.join(PARTICLE_FEATURES)}"
            )
        if not has_pid and name in PID_FEATURES:
            raise DataError(f"{source}: data.particle_features: {name!r} needs particle identity, which it lacks")
    if not features:
        raise DataError(f"{source}: data.particle_features is empty; name at least one feature")
    if all(name in PID_FEATURES for name in features):
        # padding is recognised as all-zero rows, and a neutral hadron's identity-only row could be all zero
        raise DataError(f"{source}: data.particle_features: add a kinematic feature (e.g. pt_rel) to "
                        f"{', '.join(features)}, so padded particles stay distinguishable")
    return tuple(features)


def derive_particle_features(base: Mapping[str, np.ndarray], mask: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """(n, N, len(features)) float32 from base per-particle arrays (n, N); padding (``~mask``) is exactly 0.

    ``base`` holds ``pt_rel, deta, dphi, pt, e, e_rel, eta, phi, px, py, pz`` and, for identity features,
    ``charge`` and ``type`` (codes of ``PARTICLE_TYPES``).
    """
    n, n_part = mask.shape
    out = np.zeros((n, n_part, len(features)), dtype=np.float32)
    # Logs only of real particles: padding has pT = 0, and log(0) would poison the array with -inf.
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, name in enumerate(features):
            if name in base:
                col = base[name]
            elif name == "delta_r":
                col = np.hypot(base["deta"], base["dphi"])
            elif name in ("log_pt", "log_e", "log_pt_rel", "log_e_rel"):
                col = np.log(base[name.removeprefix("log_")])
            else:  # is_<type>
                col = base["type"] == PARTICLE_TYPES.index(name.removeprefix("is_"))
            out[:, :, k] = np.where(mask, col, 0.0)
    return out


def particle_table(
    sample: ConstituentSample,
    n_particles: int | None = None,
    features: Sequence[str] = DEFAULT_PARTICLE_FEATURES,
    source: str = "",
) -> Table:
    """A Table with x (jets, n_particles, len(features)) float32 from the leading ``n_particles`` constituents.

    E is derived from pT and eta with the particle's mass neglected (the stored record has no mass; for a
    charged pion of E > 1.4 GeV that shifts E by < 0.5%). Raises DataError if ``n_particles`` exceeds
    what the sample holds or a feature is unknown.
    """
    source = source or str(sample.metadata.get("source", "jet constituents"))
    n_keep = sample.n_particles if n_particles is None else n_particles
    if not 1 <= n_keep <= sample.n_particles:
        raise DataError(
            f"{source}: data.n_particles: expected 1..{sample.n_particles} (the constituents stored per jet), "
            f"got {n_particles}"
        )
    features = check_particle_features(features, source)
    kin = sample.particles[:, :n_keep].astype(np.float64)
    jet = sample.jet.astype(np.float64)
    pt_rel, deta, dphi = kin[..., 0], kin[..., 1], kin[..., 2]
    pt = pt_rel * jet[:, None, JET_FIELDS.index("pt")]
    eta = jet[:, None, JET_FIELDS.index("eta")] + deta
    phi = np.mod(jet[:, None, JET_FIELDS.index("phi")] + dphi + np.pi, 2.0 * np.pi) - np.pi
    e = pt * np.cosh(eta)
    base = {
        "pt_rel": pt_rel, "deta": deta, "dphi": dphi, "pt": pt, "e": e, "eta": eta, "phi": phi,
        "e_rel": e / jet[:, None, JET_FIELDS.index("energy")],
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
        "charge": sample.particle_charge[:, :n_keep].astype(np.float64),
        "type": sample.particle_type[:, :n_keep],
    }
    x = derive_particle_features(base, sample.mask[:, :n_keep], features)
    meta = {**sample.metadata, "n_particles": n_keep, "particle_features": list(features)}
    return Table(x, sample.y.astype(np.int64), features, sample.class_names, meta)
