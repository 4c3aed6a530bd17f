"""The 3x3 linear algebra the RC fit needs, on immutable tuples (no numpy in the daemon)."""

from __future__ import annotations

from collections.abc import Sequence

Vector = tuple[float, float, float]
Matrix = tuple[Vector, Vector, Vector]


def scale(vector: Sequence[float], factor: float) -> Vector:
    """`vector * factor`."""
    return (vector[0] * factor, vector[1] * factor, vector[2] * factor)


def add(left: Sequence[float], right: Sequence[float]) -> Vector:
    """`left + right`."""
    return (left[0] + right[0], left[1] + right[1], left[2] + right[2])


def scale_matrix(matrix: Matrix, factor: float) -> Matrix:
    """`matrix * factor`."""
    return (scale(matrix[0], factor), scale(matrix[1], factor), scale(matrix[2], factor))


def add_outer(matrix: Matrix, phi: Vector, weight: float) -> Matrix:
    """`matrix + weight * phi phi^T`."""
    return (
        add(matrix[0], scale(phi, weight * phi[0])),
        add(matrix[1], scale(phi, weight * phi[1])),
        add(matrix[2], scale(phi, weight * phi[2])),
    )


def with_diagonal(matrix: Matrix, diagonal: Vector) -> Matrix:
    """`matrix + diag(diagonal)`."""
    return (
        (matrix[0][0] + diagonal[0], matrix[0][1], matrix[0][2]),
        (matrix[1][0], matrix[1][1] + diagonal[1], matrix[1][2]),
        (matrix[2][0], matrix[2][1], matrix[2][2] + diagonal[2]),
    )


def solve(matrix: Matrix, rhs: Vector) -> Vector:
    """The x with `matrix @ x = rhs`, by Gaussian elimination with partial pivoting."""
    rows = [[*matrix[i], rhs[i]] for i in range(3)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, 3):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [x - factor * y for x, y in zip(rows[r], rows[col], strict=True)]
    x = [0.0, 0.0, 0.0]
    for r in (2, 1, 0):
        x[r] = (rows[r][3] - sum(rows[r][c] * x[c] for c in range(r + 1, 3))) / rows[r][r]
    return (x[0], x[1], x[2])
