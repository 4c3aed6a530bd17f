"""The small dense linear algebra the margin fit needs, on immutable tuples (no numpy in the daemon).

Written with list comprehensions over `zip` rather than generators: the fit runs once a second
per GPU on the sampler thread, and these forms cost a third as much in CPython.
"""

from __future__ import annotations

from collections.abc import Sequence

Vector = tuple[float, ...]
Matrix = tuple[Vector, ...]


def zeros(size: int) -> Vector:
    """A zero vector of `size`."""
    return (0.0,) * size


def zero_matrix(size: int) -> Matrix:
    """A `size` x `size` zero matrix."""
    return (zeros(size),) * size


def scale(vector: Sequence[float], factor: float) -> Vector:
    """`vector * factor`."""
    return tuple([x * factor for x in vector])


def add(left: Sequence[float], right: Sequence[float]) -> Vector:
    """`left + right` (same length)."""
    return tuple([x + y for x, y in zip(left, right)])  # noqa: B905 - lengths match by construction; strict costs


def dot(left: Sequence[float], right: Sequence[float]) -> float:
    """`left . right` (same length)."""
    return sum([x * y for x, y in zip(left, right)])  # noqa: B905 - as above


def scale_matrix(matrix: Matrix, factor: float) -> Matrix:
    """`matrix * factor`."""
    return tuple([tuple([x * factor for x in row]) for row in matrix])


def add_outer(matrix: Matrix, phi: Sequence[float], weight: float) -> Matrix:
    """`matrix + weight * phi phi^T`."""
    return tuple(
        [
            tuple([x + w * q for x, q in zip(row, phi)])  # noqa: B905 - as above
            for row, w in zip(matrix, [weight * p for p in phi])  # noqa: B905 - as above
        ]
    )


def forget_and_add(
    matrix: Matrix, moment: Sequence[float], row: tuple[Vector, float], *, share: float, weight: float
) -> tuple[Matrix, Vector]:
    """One regression row `(phi, y)` of `weight` added after forgetting `share` along `phi`.

    With a = matrix @ phi and s = phi . a: `matrix - (share/s) a a^T + weight phi phi^T` and
    `moment - (share/s) a (phi . moment) + weight y phi`; nothing is forgotten when s is ~0.
    One pass: the fit does this for every row of every reading.
    """
    phi, y = row
    along = [sum([x * p for x, p in zip(line, phi)]) for line in matrix]  # noqa: B905 - as above
    size = sum([p * a for p, a in zip(phi, along)])  # noqa: B905 - as above
    factor = share / size if size > 1e-12 else 0.0
    kept = [factor * a for a in along]
    added = [weight * p for p in phi]
    forgotten_matrix = tuple(
        [
            tuple([x - k * b + w * q for x, b, q in zip(line, along, phi)])  # noqa: B905 - as above
            for line, k, w in zip(matrix, kept, added)  # noqa: B905 - as above
        ]
    )
    projected = sum([p * m for p, m in zip(phi, moment)])  # noqa: B905 - as above
    weighted_y = weight * y
    forgotten_moment = tuple(
        [m - k * projected + p * weighted_y for m, k, p in zip(moment, kept, phi)]  # noqa: B905 - as above
    )
    return forgotten_matrix, forgotten_moment


def with_diagonal(matrix: Matrix, diagonal: Sequence[float]) -> Matrix:
    """`matrix + diag(diagonal)`."""
    return tuple(
        [tuple([x + diagonal[i] if i == j else x for j, x in enumerate(row)]) for i, row in enumerate(matrix)]
    )


def solve(matrix: Matrix, rhs: Sequence[float]) -> Vector:
    """The x with `matrix @ x = rhs`, by Gaussian elimination with partial pivoting."""
    size = len(rhs)
    rows = [[*matrix[i], rhs[i]] for i in range(size)]
    for col in range(size):
        pivot = col  # the first row of the largest magnitude in this column, as max() would pick
        for r in range(col + 1, size):
            if abs(rows[r][col]) > abs(rows[pivot][col]):
                pivot = r
        rows[col], rows[pivot] = rows[pivot], rows[col]
        top = rows[col]
        for r in range(col + 1, size):
            factor = rows[r][col] / top[col]
            if factor:
                rows[r] = [x - factor * y for x, y in zip(rows[r], top)]  # noqa: B905 - as above
    x = [0.0] * size
    for r in reversed(range(size)):
        x[r] = (rows[r][size] - sum([rows[r][c] * x[c] for c in range(r + 1, size)])) / rows[r][r]
    return tuple(x)
