"""The 16 high-level jet-substructure features of the hls4ml 5-class jet benchmark, in pure NumPy.

The benchmark (Duarte et al., arXiv:1804.06913, sect. 3; OpenML 42468 "hls4ml_lhc_jets_hlf") describes
each anti-kT R=0.8 jet by: the mMDT-groomed mass, energy-correlation-function (ECF) ratios of the
groomed jet (C1, C2, D2, D2^(alpha,beta), M2, N2), the constituent multiplicity and sum z log z.
Definitions follow the FastJet-contrib ``EnergyCorrelator`` package with its default ``pt_R`` measure
(energies are transverse momenta, angles are Delta R in (rapidity, phi)), which implements:

* ECFs and C_N: Larkoski, Salam, Thaler, arXiv:1305.0007;
* D2 and D2^(alpha,beta): Larkoski, Moult, Neill, arXiv:1409.6298 (and 1609.07483 for alpha != beta);
* generalised ECFs  _v e_n^(beta), M2 and N2: Moult, Necib, Thaler, arXiv:1609.07483;
* mMDT (= soft drop with beta=0): Dasgupta, Fregoso, Marzani, Salam, arXiv:1307.0007;
  Larkoski, Marzani, Soyez, Thaler, arXiv:1402.2657.

Constituents are given as an (n, 4) array of four-momenta ``(px, py, pz, E)`` in GeV;
:func:`four_momenta` converts from (pt, eta, phi, mass).
"""

from __future__ import annotations

import numpy as np

from .table import JET_FEATURES

#: Soft-drop / mMDT parameters of the benchmark: beta = 0, z_cut = 0.1 (mMDT), C/A declustering.
MMDT_Z_CUT: float = 0.1


def four_momenta(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray | None = None
) -> np.ndarray:
    """Return an (n, 4) float64 array ``(px, py, pz, E)`` from pt, eta, phi and mass (0 if None)."""
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    m = np.zeros_like(pt) if mass is None else np.asarray(mass, dtype=np.float64)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    return np.stack([px, py, pz, e], axis=-1)


def kinematics(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (pt, rapidity, phi) of each four-momentum row; rapidity as FastJet defines it.

    Guarantees finite output for physical momenta (E >= |pz|); phi is in (-pi, pi].
    """
    p4 = np.atleast_2d(np.asarray(p4, dtype=np.float64))
    px, py, pz, e = p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3]
    pt = np.hypot(px, py)
    # Guard against E - |pz| rounding to <= 0 for (nearly) massless, very forward particles.
    tiny = 1e-300
    rap = 0.5 * np.log(np.maximum(e + pz, tiny) / np.maximum(e - pz, tiny))
    phi = np.arctan2(py, px)
    return pt, rap, phi


def invariant_mass(p4: np.ndarray) -> float:
    """Invariant mass (GeV) of the summed four-momenta; 0 for an empty set, never NaN."""
    p4 = np.atleast_2d(np.asarray(p4, dtype=np.float64))
    if p4.shape[0] == 0:
        return 0.0
    px, py, pz, e = p4.sum(axis=0)
    return float(np.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)))


def delta_r_matrix(rap: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Symmetric (n, n) matrix of Delta R = sqrt(Delta y^2 + Delta phi^2), Delta phi wrapped to [-pi, pi)."""
    dy = rap[:, None] - rap[None, :]
    dphi = np.mod(phi[:, None] - phi[None, :] + np.pi, 2.0 * np.pi) - np.pi
    return np.sqrt(dy * dy + dphi * dphi)


def _ca_tree(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster all rows of ``p4`` into one jet with Cambridge/Aachen (E-scheme), returning the tree.

    Returns ``(node_p4, children)`` for 2n-1 nodes: nodes 0..n-1 are the inputs, node 2n-2 the root,
    ``children[k] == (-1, -1)`` for leaves. C/A merges the pair with the smallest Delta R (radius
    larger than any jet, so everything ends in one tree), as in Dokshitzer et al., hep-ph/9707323.
    """
    n = p4.shape[0]
    node_p4 = np.zeros((2 * n - 1, 4))
    node_p4[:n] = p4
    children = np.full((2 * n - 1, 2), -1, dtype=np.int64)
    _, rap, phi = kinematics(p4)
    slot_node = np.arange(n)  # which tree node sits in each active slot
    d2 = delta_r_matrix(rap, phi) ** 2
    np.fill_diagonal(d2, np.inf)
    m, nxt = n, n
    while m > 1:
        k = int(np.argmin(d2[:m, :m]))
        a, b = divmod(k, m)
        a, b = min(a, b), max(a, b)
        new = node_p4[slot_node[a]] + node_p4[slot_node[b]]
        node_p4[nxt] = new
        children[nxt] = (slot_node[a], slot_node[b])
        # Remove slot b by moving the last active slot into it (a < b, so a is never the moved one).
        last = m - 1
        if b != last:
            slot_node[b] = slot_node[last]
            rap[b], phi[b] = rap[last], phi[last]
            d2[b, :m] = d2[last, :m]
            d2[:m, b] = d2[:m, last]
            d2[b, b] = np.inf
        m -= 1
        slot_node[a] = nxt
        _, ra, pa = kinematics(new[None, :])
        rap[a], phi[a] = ra[0], pa[0]
        dy = rap[:m] - rap[a]
        dphi = np.mod(phi[:m] - phi[a] + np.pi, 2.0 * np.pi) - np.pi
        row = dy * dy + dphi * dphi
        row[a] = np.inf
        d2[a, :m] = row
        d2[:m, a] = row
        nxt += 1
    return node_p4, children


def mmdt_constituents(p4: np.ndarray, z_cut: float = MMDT_Z_CUT) -> np.ndarray:
    """Indices (sorted) of the constituents kept by the modified mass-drop tagger.

    mMDT as soft drop with beta=0 (arXiv:1307.0007, 1402.2657; FastJet-contrib RecursiveTools defaults:
    scalar-z symmetry, follow the larger-pt branch): recluster with C/A, then decluster from the root,
    at each step stopping if min(pt1, pt2) / (pt1 + pt2) > z_cut and otherwise dropping the softer branch.
    If declustering reaches a single constituent, that constituent alone is returned.
    Guarantees a non-empty result for a non-empty input.
    """
    p4 = np.atleast_2d(np.asarray(p4, dtype=np.float64))
    n = p4.shape[0]
    if n <= 1:
        return np.arange(n)
    node_p4, children = _ca_tree(p4)
    node_pt = np.hypot(node_p4[:, 0], node_p4[:, 1])
    node = 2 * n - 2
    while children[node, 0] >= 0:
        c1, c2 = children[node]
        pt1, pt2 = node_pt[c1], node_pt[c2]
        if min(pt1, pt2) / (pt1 + pt2) > z_cut:
            break
        node = c1 if pt1 >= pt2 else c2
    leaves: list[int] = []
    stack = [int(node)]
    while stack:
        k = stack.pop()
        if children[k, 0] < 0:
            leaves.append(k)
        else:
            stack.extend(int(c) for c in children[k])
    return np.array(sorted(leaves), dtype=np.int64)


def energy_correlators(
    pt: np.ndarray, rap: np.ndarray, phi: np.ndarray, betas: tuple[float, ...] = (1.0, 2.0)
) -> dict[str, dict[float, float]]:
    """Normalised (generalised) energy correlation functions of a set of particles, ``pt_R`` measure.

    With z_i = pt_i / sum(pt) and R_ij = Delta R in (y, phi), returns, for each beta:

    * ``"e2"``:  e_2^(beta)  = sum_{i<j} z_i z_j R_ij^beta                    (1305.0007 eq. 2.1, normalised;
      equal to 1e2 of 1609.07483)
    * ``"e3"``:  e_3^(beta)  = sum_{i<j<k} z_i z_j z_k (R_ij R_ik R_jk)^beta  (= 3e3 of 1609.07483)
    * ``"1e3"``: sum_{i<j<k} z_i z_j z_k min(R_ij, R_ik, R_jk)^beta            (1609.07483 eq. 2.3, v=1)
    * ``"2e3"``: sum_{i<j<k} z_i z_j z_k (product of the two smallest angles)^beta (v=2)

    Three-point sums are O(n^3): e3 via trace((Z W)^3) / 6 with W_ij = R_ij^beta (BLAS), 1e3 and 2e3 by a
    loop over i vectorised over (j, k). For beta = 0 they are the plain sums of z_i z_j z_k.
    Guarantees finite values >= 0; correlators of order N are 0 for fewer than N particles
    (as in FastJet-contrib).
    """
    pt = np.asarray(pt, dtype=np.float64)
    n = pt.shape[0]
    out: dict[str, dict[float, float]] = {
        key: dict.fromkeys(betas, 0.0) for key in ("e2", "e3", "1e3", "2e3")
    }
    total = pt.sum()
    if n < 2 or total <= 0.0:
        return out
    z = pt / total
    dr = delta_r_matrix(np.asarray(rap, dtype=np.float64), np.asarray(phi, dtype=np.float64))
    np.fill_diagonal(dr, 0.0)
    iu, ju = np.triu_indices(n, 1)
    zz = z[iu] * z[ju]
    rij = dr[iu, ju]
    for beta in betas:
        # R**0 = 1 for every distinct pair, matching pow(R, 0) = 1 in FastJet-contrib.
        out["e2"][beta] = float(np.dot(zz, rij**beta))
    if n < 3:
        return out
    positive = [b for b in betas if b > 0.0]
    for beta in betas:
        if beta == 0.0:
            # sum_{i<j<k} z_i z_j z_k = elementary symmetric polynomial e_3 of z (Newton's identities).
            p1, p2, p3 = z.sum(), np.dot(z, z), np.sum(z**3)
            s = float((p1**3 - 3.0 * p1 * p2 + 2.0 * p3) / 6.0)
            for key in ("e3", "1e3", "2e3"):
                out[key][beta] = s
    for beta in positive:
        # Every ordered triple of distinct indices contributes the same product; repeated indices give
        # R_ii = 0, so trace((Z W)^3) = 6 e3 exactly.
        zw = z[:, None] * (dr**beta)
        out["e3"][beta] = float(np.sum((zw @ zw) * zw.T) / 6.0)
    sums = {key: dict.fromkeys(positive, 0.0) for key in ("1e3", "2e3")}
    # Preallocated flat work buffers: fresh (j, k) temporaries of a few hundred kB per i would each be
    # mmap'ed and page-faulted by the allocator, which made large jets ~30x slower.
    bufs = np.empty((5, (n - 1) * (n - 1)))
    for i in range(n - 2):
        # Triplets (i, j, k) with i < j, k: sum over the full (j, k) square and halve. The diagonal j == k
        # has a zero angle (R_jj = 0), so it adds nothing to either sum for beta > 0.
        m = n - 1 - i
        lo, hi, r_min, r_two, tmp = (b[: m * m].reshape(m, m) for b in bufs)
        a = dr[i, i + 1 :]
        c = dr[i + 1 :, i + 1 :]
        zs = z[i + 1 :]
        np.minimum.outer(a, a, out=lo)
        np.maximum.outer(a, a, out=hi)
        np.minimum(lo, c, out=r_min)
        # Middle of three values = max(min(a, b), min(max(a, b), c)); the two smallest multiply to min * mid.
        np.minimum(hi, c, out=tmp)
        np.maximum(lo, tmp, out=tmp)
        np.multiply(r_min, tmp, out=r_two)
        weight = 0.5 * float(z[i])
        for key, r in (("1e3", r_min), ("2e3", r_two)):
            for beta in positive:
                if beta == 1.0:
                    rb = r
                elif beta == 2.0:
                    rb = np.multiply(r, r, out=tmp)
                else:
                    rb = np.power(r, beta, out=tmp)
                sums[key][beta] += weight * float(zs @ (rb @ zs))
    for key, by_beta in sums.items():
        out[key].update(by_beta)
    return out


def _ratio(num: float, den: float) -> float:
    """num / den, defined as 0 when den is 0 (FastJet-contrib would give NaN for < 2 or 3 particles)."""
    return num / den if den > 0.0 else 0.0


def zlogz(pt: np.ndarray) -> float:
    """sum_i z_i log z_i with z_i = pt_i / sum_j pt_j over all (ungroomed) constituents (1804.06913, sect. 3).

    The jet pt is the scalar sum so that sum z_i = 1; the value is <= 0 and 0 for a single constituent.
    """
    pt = np.asarray(pt, dtype=np.float64)
    pt = pt[pt > 0.0]
    if pt.size == 0:
        return 0.0
    z = pt / pt.sum()
    return float(np.sum(z * np.log(z)))


def jet_feature_dict(p4: np.ndarray, z_cut: float = MMDT_Z_CUT) -> dict[str, float]:
    """All 16 benchmark features of one jet, keyed by the names in ``JET_FEATURES``.

    ``p4`` is the (n, 4) array of the jet's constituents ``(px, py, pz, E)``. Groomed ("_mmdt")
    features use the mMDT-kept constituents; ``zlogz`` and ``multiplicity`` use all constituents.
    With e_N the normalised ECFs of :func:`energy_correlators` on the groomed jet:

    * C1^(b) = e2^(b)                          (1305.0007: C_1 = e2 e0 / e1^2, with e0 = e1 = 1)
    * C2^(b) = e3^(b) / (e2^(b))^2             (1305.0007)
    * D2^(b) = e3^(b) / (e2^(b))^3             (1409.6298)
    * D2^(a=1,b) = e3^(1) / (e2^(b))^(3/b)     (1409.6298 eq. 3.13 / 1609.07483; for b=1 it equals D2^(1))
    * M2^(b) = 1e3^(b) / 1e2^(b)               (1609.07483)
    * N2^(b) = 2e3^(b) / (1e2^(b))^2           (1609.07483)

    Guarantees finite floats; ratios with a vanishing denominator (fewer than 2 groomed constituents or all
    collinear) are 0.
    """
    p4 = np.atleast_2d(np.asarray(p4, dtype=np.float64))
    if p4.shape[0] == 0:
        return {name: 0.0 for name in JET_FEATURES}
    pt_all, _, _ = kinematics(p4)
    keep = mmdt_constituents(p4, z_cut=z_cut)
    groomed = p4[keep]
    pt, rap, phi = kinematics(groomed)
    ecf = energy_correlators(pt, rap, phi, betas=(0.0, 1.0, 2.0))
    e2, e3, e13, e23 = ecf["e2"], ecf["e3"], ecf["1e3"], ecf["2e3"]
    feats = {
        "zlogz": zlogz(pt_all),
        "c1_b0_mmdt": e2[0.0],
        "c1_b1_mmdt": e2[1.0],
        "c1_b2_mmdt": e2[2.0],
        "c2_b1_mmdt": _ratio(e3[1.0], e2[1.0] ** 2),
        "c2_b2_mmdt": _ratio(e3[2.0], e2[2.0] ** 2),
        "d2_b1_mmdt": _ratio(e3[1.0], e2[1.0] ** 3),
        "d2_b2_mmdt": _ratio(e3[2.0], e2[2.0] ** 3),
        "d2_a1_b1_mmdt": _ratio(e3[1.0], e2[1.0] ** 3.0),
        "d2_a1_b2_mmdt": _ratio(e3[1.0], e2[2.0] ** 1.5),
        "m2_b1_mmdt": _ratio(e13[1.0], e2[1.0]),
        "m2_b2_mmdt": _ratio(e13[2.0], e2[2.0]),
        "n2_b1_mmdt": _ratio(e23[1.0], e2[1.0] ** 2),
        "n2_b2_mmdt": _ratio(e23[2.0], e2[2.0] ** 2),
        "mass_mmdt": invariant_mass(groomed),
        "multiplicity": float(p4.shape[0]),
    }
    return {name: feats[name] for name in JET_FEATURES}


def jet_features(p4: np.ndarray, z_cut: float = MMDT_Z_CUT) -> np.ndarray:
    """The 16 benchmark features of one jet as a float64 vector in ``JET_FEATURES`` order."""
    d = jet_feature_dict(p4, z_cut=z_cut)
    return np.array([d[name] for name in JET_FEATURES], dtype=np.float64)
