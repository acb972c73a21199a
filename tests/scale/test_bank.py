"""The task bank: rows paged in from a sparse .npy file, committed only after a checkpoint saved them."""

import numpy as np
import pytest
import torch

from liftpeft.scale.bank import BankError, TaskBank


def test_a_file_bank_starts_at_zero_keeps_writes_in_memory_until_commit(tmp_path):
    bank = TaskBank(1000, 64, ("theta", "theta_sq"), path=tmp_path)
    assert torch.equal(bank.read("theta", 999), torch.zeros(64))
    # sparse: 1000 x 64 floats are addressed, (almost) none are on disk
    assert (tmp_path / "theta.npy").stat().st_blocks * 512 < 1000 * 64 * 4 / 4
    row = torch.randn(64)
    bank.write("theta", 7, row)
    assert torch.equal(bank.read("theta", 7), row) and bank.dirty_rows == 1
    on_disk = np.load(tmp_path / "theta.npy", mmap_mode="r")
    assert not on_disk[7].any()  # not yet: the checkpoint that holds it comes first
    saved = bank.pending()
    assert saved["theta.rows"].tolist() == [7] and saved["theta_sq.rows"].tolist() == []
    bank.commit()
    assert bank.dirty_rows == 0
    assert np.array_equal(np.load(tmp_path / "theta.npy", mmap_mode="r")[7], row.numpy())
    bank.apply(saved)  # replaying a saved checkpoint is idempotent
    bank.close()
    reopened = TaskBank(1000, 64, ("theta", "theta_sq"), path=tmp_path)
    assert torch.equal(reopened.read("theta", 7), row)


def test_a_bank_of_another_shape_is_refused(tmp_path):
    TaskBank(10, 8, path=tmp_path).close()
    with pytest.raises(BankError, match=r"shape \(10, 8\).*same tasks and world size"):
        TaskBank(11, 8, path=tmp_path)


def test_an_in_memory_bank_writes_through_and_saves_every_row():
    bank = TaskBank(3, 2)
    bank.write("theta", 1, torch.tensor([1.0, 2.0]))
    saved = bank.pending()
    assert saved["theta.rows"].tolist() == [0, 1, 2]
    other = TaskBank(3, 2)
    other.apply(saved)
    assert torch.equal(other.rows("theta", 0, 3), bank.rows("theta", 0, 3))
    with pytest.raises(IndexError):
        bank.read("theta", 3)
