"""The memory arithmetic of docs/sizing.md against real implicit models and matrices.

The page sizes a GPU trial by its arrays: the two float32 factor matrices, factors x
(users + items) x 4 bytes, and the CSR matrix, nnz x (4 + 4) + (users + 1) x 4 bytes
(float32 values, int32 column indices and row pointers). These tests check both
formulas on a small matrix with implicit's CPU ALS (whose factor matrices have exactly
``factors`` columns, no padding) and BPR (one more: the item bias), and that the page's
table at the MovieLens-20M shape is that arithmetic.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from rectune.models import build_model, fit_model

SIZING = Path(__file__).resolve().parents[1] / "docs" / "sizing.md"
ML20M = {"users": 138_493, "items": 26_744, "nnz": 20_000_263}
MIB = 2**20


def factor_bytes(factors: int, users: int, items: int) -> int:
    """The two float32 factor matrices of an ALS model."""
    return factors * (users + items) * 4


def csr_bytes(nnz: int, rows: int) -> int:
    """A CSR matrix of float32 values with int32 indices and row pointers."""
    return nnz * (4 + 4) + (rows + 1) * 4


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    matrix = sp.random(60, 40, density=0.15, format="csr", dtype=np.float32, random_state=rng)
    matrix.data[:] = 1.0
    return matrix


@pytest.mark.parametrize("factors", [7, 16, 33])
def test_als_factor_matrices_are_factors_by_users_plus_items_float32(user_items, factors):
    model = fit_model(
        build_model("als", {"factors": factors, "iterations": 1}, device="cpu", num_threads=1),
        user_items,
    )
    users, items = user_items.shape
    # implicit's CPU ALS does not pad: exactly `factors` columns, float32.
    assert model.user_factors.shape == (users, factors)
    assert model.item_factors.shape == (items, factors)
    assert model.user_factors.dtype == np.float32
    nbytes = model.user_factors.nbytes + model.item_factors.nbytes
    assert nbytes == factor_bytes(factors, users, items)


def test_bpr_factor_matrices_carry_one_more_column(user_items):
    model = fit_model(
        build_model("bpr", {"factors": 16, "iterations": 1}, device="cpu", num_threads=1),
        user_items,
    )
    users, items = user_items.shape
    assert model.user_factors.shape == (users, 17)
    nbytes = model.user_factors.nbytes + model.item_factors.nbytes
    assert nbytes == factor_bytes(16 + 1, users, items)


def test_csr_arithmetic(user_items):
    matrix = user_items.astype(np.float32)
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int32)
    stored = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    assert stored == csr_bytes(matrix.nnz, matrix.shape[0])


def test_the_pages_gpu_table_is_that_arithmetic():
    """Each row of docs/sizing.md's GPU table: factors, factor MiB, CSR MiB (the matrix
    and its transpose, both on the device), Gram MiB, total MiB."""
    rows = re.findall(
        r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \*\*([\d.]+)\*\* \|$",
        SIZING.read_text(),
        re.M,
    )
    assert [int(row[0]) for row in rows] == [64, 128, 256]
    users, items, nnz = ML20M["users"], ML20M["items"], ML20M["nnz"]
    csr = csr_bytes(nnz, users) + csr_bytes(nnz, items)
    for factors, fmat, csr_mib, gram, total in rows:
        f = int(factors)
        expected = [factor_bytes(f, users, items), csr, 2 * f * f * 4]
        expected.append(sum(expected))
        shown = [float(fmat), float(csr_mib), float(gram), float(total)]
        assert shown == pytest.approx([b / MIB for b in expected], abs=0.051)
