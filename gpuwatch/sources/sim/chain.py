"""The exact path of a three-node RC chain (die, heat spreader, sink) at constant power, by its modes.

    C_d dT_d/dt = P - (T_d - T_p)/R_ds
    C_p dT_p/dt = (T_d - T_p)/R_ds - (T_p - T_s)/R_ps
    C_s dT_s/dt = (T_p - T_s)/R_ps - (T_s - T_inlet)/R_sa

On the deviation e from the steady state, e' = -C^-1 G e with G the (symmetric) conductance
matrix. Scaled by C^1/2 it is symmetric, S = C^-1/2 G C^-1/2, whose eigenvalues are the decay
rates (real and positive for positive R and C) and whose orthonormal eigenvectors give each
mode's share of every node: e(t) = sum_k C^-1/2 q_k (q_k . C^1/2 e0) e^(-lambda_k t). A 3x3
symmetric matrix is diagonalised by Jacobi rotations to machine precision in a few sweeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Modelling assumption: between two samples of its peak search, the die's path has at most one
# turn (three exponentials have at most two); 48 probes over a stretch find the right one.
_PEAK_PROBES = 48
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_JACOBI_SWEEPS = 30

Vector = tuple[float, float, float]
Matrix = list[list[float]]


@dataclass(frozen=True, slots=True)
class ChainResponse:
    """Die, spreader and sink over a stretch of constant power: steady point plus three decaying modes.

    deviation(t) = sum over modes of amplitude * e^(rate*t) (rates in 1/s, < 0), per node.
    """

    steady: Vector  # (die, spreader, sink) °C
    modes: tuple[tuple[float, Vector], ...]  # (rate, amplitude per node)

    def nodes_at(self, seconds: float) -> Vector:
        """(die, spreader, sink) °C after `seconds`."""
        die, spreader, sink = self.steady
        for rate, (a_die, a_spreader, a_sink) in self.modes:
            decay = math.exp(rate * seconds)
            die += a_die * decay
            spreader += a_spreader * decay
            sink += a_sink * decay
        return die, spreader, sink

    def at(self, seconds: float) -> tuple[float, float]:
        """(die, sink) °C after `seconds`."""
        die, _, sink = self.nodes_at(seconds)
        return die, sink

    def spreader_at(self, seconds: float) -> float:
        """The spreader's °C after `seconds`."""
        return self.nodes_at(seconds)[1]

    def die_modes(self) -> tuple[float, tuple[tuple[float, float], ...]]:
        """The die's steady °C and its (rate, amplitude) per mode."""
        return self.steady[0], tuple((rate, amplitude[0]) for rate, amplitude in self.modes)

    def die_peak_c(self, seconds: float) -> float:
        """The highest die temperature over [0, seconds]: the best of evenly spaced probes, refined."""
        if seconds <= 0:
            return self.nodes_at(0.0)[0]
        probes = [seconds * i / _PEAK_PROBES for i in range(_PEAK_PROBES + 1)]
        values = [self.nodes_at(t)[0] for t in probes]
        best = max(range(len(values)), key=values.__getitem__)
        low, high = probes[max(0, best - 1)], probes[min(_PEAK_PROBES, best + 1)]
        for _ in range(40):  # golden-section search: the bracket shrinks to 1e-8 of its width
            left, right = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
            if self.nodes_at(left)[0] < self.nodes_at(right)[0]:
                low = left
            else:
                high = right
        return max(values[best], self.nodes_at((low + high) / 2)[0])


def chain_response(resistances: Vector, capacities: Vector, start: Vector, steady: Vector) -> ChainResponse:
    """The path from `start` to `steady` (°C), with (R_ds, R_ps, R_sa) and (C_d, C_p, C_s)."""
    r_ds, r_ps, r_sa = resistances
    g_ds, g_ps, g_sa = 1.0 / r_ds, 1.0 / r_ps, 1.0 / r_sa
    conductance = [[g_ds, -g_ds, 0.0], [-g_ds, g_ds + g_ps, -g_ps], [0.0, -g_ps, g_ps + g_sa]]
    roots = [math.sqrt(c) for c in capacities]
    scaled = [[conductance[i][j] / (roots[i] * roots[j]) for j in range(3)] for i in range(3)]
    values, vectors = _jacobi(scaled)
    deviation = [start[i] - steady[i] for i in range(3)]
    weighted = [roots[i] * deviation[i] for i in range(3)]
    modes = []
    for k in range(3):
        q = [vectors[i][k] for i in range(3)]
        weight = sum(q[i] * weighted[i] for i in range(3))
        amplitude = (q[0] * weight / roots[0], q[1] * weight / roots[1], q[2] * weight / roots[2])
        modes.append((-values[k], amplitude))
    return ChainResponse(steady, tuple(modes))


def _jacobi(matrix: Matrix) -> tuple[list[float], Matrix]:
    """Eigenvalues and eigenvectors (as columns) of a symmetric 3x3 matrix, by cyclic Jacobi rotations."""
    a = [row[:] for row in matrix]
    v = [[1.0 if i == j else 0.0 for j in range(3)] for i in range(3)]
    for _ in range(_JACOBI_SWEEPS):
        off = a[0][1] ** 2 + a[0][2] ** 2 + a[1][2] ** 2
        if off <= 1e-30 * (a[0][0] ** 2 + a[1][1] ** 2 + a[2][2] ** 2):
            break
        for p, q in ((0, 1), (0, 2), (1, 2)):
            if a[p][q] == 0.0:
                continue
            theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q])
            t = math.copysign(1.0, theta) / (abs(theta) + math.sqrt(theta * theta + 1.0))
            c = 1.0 / math.sqrt(t * t + 1.0)
            s = t * c
            for k in range(3):  # A <- A J (columns p, q)
                akp, akq = a[k][p], a[k][q]
                a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
            for k in range(3):  # A <- J^T A (rows p, q)
                apk, aqk = a[p][k], a[q][k]
                a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
            for k in range(3):
                vkp, vkq = v[k][p], v[k][q]
                v[k][p], v[k][q] = c * vkp - s * vkq, s * vkp + c * vkq
    return [a[i][i] for i in range(3)], v
