"""The no-repeat n-gram rule: banned tokens, incremental state, and score masking."""

from __future__ import annotations

import pytest
import torch

from synthloom.samplers.ngram_block import NgramBlock


def naive_banned(ids: list[int], n: int) -> set[int]:
    """Every token that followed an earlier occurrence of the last n - 1 tokens."""
    if n == 0 or len(ids) < n - 1:
        return set()
    prefix = ids[len(ids) - n + 1 :] if n > 1 else []
    return {ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i : i + n - 1] == prefix}


def test_banned_tokens_complete_an_earlier_ngram() -> None:
    assert NgramBlock(3).banned("a", [5, 6, 7, 5, 6]) == {7}
    assert NgramBlock(2).banned("a", [1, 2, 1, 3, 1]) == {2, 3}
    assert NgramBlock(2).banned("a", [1, 2, 3]) == set()
    assert NgramBlock(1).banned("a", [4, 4, 9]) == {4, 9}
    assert NgramBlock(0).banned("a", [1, 1, 1]) == set()
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        NgramBlock(-1)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_incremental_state_matches_a_fresh_scan_for_every_prefix(n: int) -> None:
    seq = torch.randint(0, 5, (60,), generator=torch.Generator().manual_seed(n)).tolist()
    block = NgramBlock(n)
    for t in range(len(seq) + 1):
        assert block.banned("row", seq[:t]) == naive_banned(seq[:t], n), t
        # another key's state is its own
        assert block.banned(("other", t), seq[:t][::-1]) == naive_banned(seq[:t][::-1], n)


def test_masked_sets_banned_scores_to_minus_infinity_and_keeps_the_input() -> None:
    scores = torch.zeros(3, 6)
    block = NgramBlock(2)
    out = block.masked(scores, ["x", "y", "z"], [[1, 2, 1], [3], [4, 4]])
    assert torch.equal(scores, torch.zeros(3, 6)), "the input is not modified"
    assert torch.isinf(out[0, 2]) and torch.isfinite(out[0]).sum() == 5
    assert torch.equal(out[1], scores[1])
    assert torch.isinf(out[2, 4]) and torch.isfinite(out[2]).sum() == 5
    nothing = NgramBlock(2).masked(scores, ["x"], [[1, 2]])
    assert nothing is scores


def test_a_row_left_with_only_banned_tokens_keeps_its_scores() -> None:
    scores = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    out = NgramBlock(2).masked(scores, ["x"], [[0, 0]])  # bans token 0, the only finite one
    assert torch.equal(out, scores)
