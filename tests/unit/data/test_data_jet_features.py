"""Hand-computable checks of the NumPy jet-substructure features (no Pythia/FastJet needed)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fastml.data.jet_features import (
    energy_correlators,
    four_momenta,
    invariant_mass,
    jet_feature_dict,
    jet_features,
    kinematics,
    mmdt_constituents,
    zlogz,
)
from fastml.data.table import JET_FEATURES


def _pair(dy: float = 0.4, pt: float = 500.0) -> np.ndarray:
    """Two massless particles of equal pt at the same phi, separated by dy in rapidity (= eta, massless)."""
    return four_momenta([pt, pt], [-dy / 2, dy / 2], [0.3, 0.3])


def _brute_force(pt: np.ndarray, rap: np.ndarray, phi: np.ndarray, beta: float) -> dict[str, float]:
    """Direct triple loops over i<j<k, the definitions of 1305.0007 / 1609.07483 written out."""
    z = pt / pt.sum()

    def r(i: int, j: int) -> float:
        dphi = (phi[i] - phi[j] + math.pi) % (2 * math.pi) - math.pi
        return math.hypot(rap[i] - rap[j], dphi)

    e2 = sum(z[i] * z[j] * r(i, j) ** beta for i, j in itertools.combinations(range(len(z)), 2))
    e3 = e13 = e23 = 0.0
    for i, j, k in itertools.combinations(range(len(z)), 3):
        angles = sorted([r(i, j), r(i, k), r(j, k)])
        w = z[i] * z[j] * z[k]
        e3 += w * (angles[0] * angles[1] * angles[2]) ** beta
        e13 += w * angles[0] ** beta
        e23 += w * (angles[0] * angles[1]) ** beta
    return {"e2": e2, "e3": e3, "1e3": e13, "2e3": e23}


def test_feature_order_and_length() -> None:
    feats = jet_features(_pair())
    assert feats.shape == (len(JET_FEATURES),)
    assert list(jet_feature_dict(_pair())) == list(JET_FEATURES)


def test_two_equal_particles_known_values() -> None:
    dy = 0.4
    f = jet_feature_dict(_pair(dy))
    # m^2 = 2 pt1 pt2 (cosh dy - cos dphi) for massless particles.
    assert f["mass_mmdt"] == pytest.approx(math.sqrt(2 * 500.0 * 500.0 * (math.cosh(dy) - 1.0)), rel=1e-9)
    # z = 1/2 each: e2^(beta) = 1/4 * dy^beta; C1^(0) = 1/4.
    assert f["c1_b0_mmdt"] == pytest.approx(0.25)
    assert f["c1_b1_mmdt"] == pytest.approx(0.25 * dy)
    assert f["c1_b2_mmdt"] == pytest.approx(0.25 * dy**2)
    assert f["zlogz"] == pytest.approx(2 * 0.5 * math.log(0.5))
    assert f["multiplicity"] == 2
    # No three-particle correlations for two particles.
    for name in ("c2_b1_mmdt", "d2_b2_mmdt", "m2_b1_mmdt", "n2_b2_mmdt", "d2_a1_b2_mmdt"):
        assert f[name] == 0.0


def test_single_particle_jet() -> None:
    p4 = four_momenta([800.0], [0.1], [1.0], [0.14])
    f = jet_feature_dict(p4)
    assert f["multiplicity"] == 1
    assert f["zlogz"] == 0.0
    assert f["mass_mmdt"] == pytest.approx(0.14, rel=1e-6)
    assert all(math.isfinite(v) for v in f.values())
    assert f["c1_b1_mmdt"] == 0.0 and f["d2_b1_mmdt"] == 0.0


def test_empty_jet_is_all_zero() -> None:
    assert np.all(jet_features(np.zeros((0, 4))) == 0.0)


def test_three_particle_ratios_by_hand() -> None:
    # Equal pt, an equilateral triangle of side s in (y, phi): every angle equals s.
    s = 0.3
    rap = np.array([0.0, s, s / 2])
    phi = np.array([0.0, 0.0, s * math.sqrt(3) / 2])
    pt = np.array([300.0, 300.0, 300.0])
    ecf = energy_correlators(pt, rap, phi, betas=(1.0, 2.0))
    for beta in (1.0, 2.0):
        assert ecf["e2"][beta] == pytest.approx(3 * (1 / 9) * s**beta)
        assert ecf["e3"][beta] == pytest.approx((1 / 27) * s ** (3 * beta))
        assert ecf["1e3"][beta] == pytest.approx((1 / 27) * s**beta)
        assert ecf["2e3"][beta] == pytest.approx((1 / 27) * s ** (2 * beta))
    f = jet_feature_dict(four_momenta(pt, rap, phi))
    # D2 = e3 / e2^3 = (s^3/27) / (s/3)^3 = 1 for beta = 1; N2 = 2e3 / e2^2 = (s^2/27)/(s^2/9) = 1/3.
    assert f["d2_b1_mmdt"] == pytest.approx(1.0, rel=1e-9)
    assert f["d2_b2_mmdt"] == pytest.approx(1.0, rel=1e-9)
    assert f["n2_b1_mmdt"] == pytest.approx(1 / 3, rel=1e-9)
    assert f["m2_b1_mmdt"] == pytest.approx((s / 27) / (s / 3), rel=1e-9)
    assert f["c2_b1_mmdt"] == pytest.approx((s**3 / 27) / (s / 3) ** 2, rel=1e-9)
    assert f["d2_a1_b1_mmdt"] == pytest.approx(f["d2_b1_mmdt"])
    assert f["d2_a1_b2_mmdt"] == pytest.approx((s**3 / 27) / (s**2 / 3) ** 1.5, rel=1e-9)


def test_correlators_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    pt = rng.exponential(20.0, 25) + 1.0
    rap = rng.normal(0.0, 0.3, 25)
    phi = np.mod(rng.normal(3.1, 0.3, 25) + np.pi, 2 * np.pi) - np.pi  # straddles the phi = +-pi seam
    ecf = energy_correlators(pt, rap, phi, betas=(0.0, 1.0, 2.0))
    for beta in (0.0, 1.0, 2.0):
        ref = _brute_force(pt, rap, phi, beta)
        for key, val in ref.items():
            assert ecf[key][beta] == pytest.approx(val, rel=1e-10), (key, beta)


def test_mmdt_drops_soft_wide_particle_keeps_symmetric_pair() -> None:
    # A symmetric hard pair (z = 0.5 > 0.1) plus a 1% soft particle at wide angle: C/A clusters the pair
    # first, the soft particle last; its splitting fails z_cut and it is groomed away.
    p4 = four_momenta([500.0, 480.0, 10.0], [0.0, 0.2, 0.7], [0.0, 0.0, 0.3])
    keep = mmdt_constituents(p4)
    assert keep.tolist() == [0, 1]
    f = jet_feature_dict(p4)
    assert f["mass_mmdt"] == pytest.approx(invariant_mass(p4[:2]))
    assert f["multiplicity"] == 3  # ungroomed count


def test_mmdt_grooms_asymmetric_pair_to_leading_particle() -> None:
    p4 = four_momenta([950.0, 50.0], [0.0, 0.3], [0.0, 0.0])  # z = 0.05 < 0.1
    assert mmdt_constituents(p4).tolist() == [0]
    assert jet_feature_dict(p4)["mass_mmdt"] == pytest.approx(0.0, abs=1e-6)


def test_mmdt_keeps_everything_for_balanced_two_prong() -> None:
    # Two prongs of two particles each, both prongs carrying half the pt.
    p4 = four_momenta([250.0, 250.0, 240.0, 260.0], [0.0, 0.02, 0.5, 0.52], [0.0, 0.01, 0.0, 0.01])
    assert mmdt_constituents(p4).tolist() == [0, 1, 2, 3]


def test_zlogz_and_kinematics() -> None:
    assert zlogz(np.array([1.0, 1.0, 2.0])) == pytest.approx(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    pt, rap, phi = kinematics(four_momenta([100.0], [1.2], [-2.0]))
    assert pt[0] == pytest.approx(100.0) and rap[0] == pytest.approx(1.2) and phi[0] == pytest.approx(-2.0)


def test_invariance_under_boost_along_beam_and_rotation_in_phi() -> None:
    rng = np.random.default_rng(5)
    n = 40
    pt, eta, phi = rng.exponential(20.0, n) + 1.0, rng.normal(0.0, 0.25, n), rng.normal(0.0, 0.25, n)
    base = jet_features(four_momenta(pt, eta, phi))
    # Massless: shifting eta = boost along z; rotating phi; both leave pt_R features unchanged.
    moved = jet_features(four_momenta(pt, eta + 0.8, phi + 1.5))
    np.testing.assert_allclose(moved, base, rtol=1e-7, atol=1e-9)
