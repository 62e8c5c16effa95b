"""Token statistics against float64 log_softmax."""

import pytest
import torch

from acpo.stats import completion_stats, token_stats


def reference(logits, targets):
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logp.gather(-1, targets[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_matches_float64_log_softmax_with_padding_and_ragged_chunks(chunk):
    torch.manual_seed(0)
    logits = torch.randn(3, 11, 37) * 4  # vocab 37 and 33 positions: not multiples of the chunk
    targets = torch.randint(0, 37, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, :] = False
    lp, ent = token_stats(logits, targets, mask, chunk_tokens=chunk)
    ref_lp, ref_ent = reference(logits, targets)
    assert torch.allclose(lp[mask].double(), ref_lp[mask], atol=1e-5)
    assert torch.allclose(ent[mask].double(), ref_ent[mask], atol=1e-5)
    assert (lp[~mask] == 0).all() and (ent[~mask] == 0).all()


def test_bfloat16_logits_are_upcast():
    torch.manual_seed(1)
    logits = (torch.randn(2, 5, 50) * 3).bfloat16()
    targets = torch.randint(0, 50, (2, 5))
    lp, ent = token_stats(logits, targets, chunk_tokens=3)
    ref_lp, ref_ent = reference(logits.float(), targets)
    assert lp.dtype == torch.float32
    assert torch.allclose(lp.double(), ref_lp, atol=1e-5) and torch.allclose(ent.double(), ref_ent, atol=1e-5)


def test_input_logits_are_not_modified():
    logits = torch.randn(2, 4, 9)
    before = logits.clone()
    token_stats(logits, torch.zeros(2, 4, dtype=torch.long))
    assert torch.equal(logits, before)


def test_non_finite_logits_raise_with_positions():
    logits = torch.randn(2, 4, 9)
    logits[1, 2, 5] = float("nan")
    with pytest.raises(FloatingPointError, match=r"\(1, 2\)"):
        token_stats(logits, torch.zeros(2, 4, dtype=torch.long))
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False  # a NaN under padding is not an error
    token_stats(logits, torch.zeros(2, 4, dtype=torch.long), mask)


def test_completion_stats_match_per_sequence_forward(model_and_tok):
    model, tok = model_and_tok
    from acpo.tokens import pad_batch

    prompts = [tok("Q: 1+2=?\n")["input_ids"], tok("Q: 7-3*4+2=?\n")["input_ids"]]
    comps = [tok("1+2=3\n#### 3", add_special_tokens=False)["input_ids"], tok("#### 1", add_special_tokens=False)["input_ids"]]
    lp, ent = completion_stats(model, *pad_batch(prompts, comps, tok.pad_token_id))
    for i, (p, c) in enumerate(zip(prompts, comps)):
        logits = model(torch.tensor([p + c])).logits[0, len(p) - 1 : -1]
        ref_lp, ref_ent = reference(logits, torch.tensor(c))
        assert torch.allclose(lp[i, : len(c)].double(), ref_lp, atol=1e-4)
        assert torch.allclose(ent[i, : len(c)].double(), ref_ent, atol=1e-4)
        assert (lp[i, len(c) :] == 0).all()


def test_gradients_match_float64_reference():
    torch.manual_seed(2)
    logits = torch.randn(2, 5, 13, dtype=torch.float64)
    targets = torch.randint(0, 13, (2, 5))
    a = logits.clone().float().requires_grad_(True)
    lp, ent = token_stats(a, targets, chunk_tokens=3)
    (lp.sum() + 0.5 * ent.sum()).backward()
    b = logits.clone().requires_grad_(True)
    ref_lp, ref_ent = reference(b, targets)
    (ref_lp.sum() + 0.5 * ref_ent.sum()).backward()
    assert torch.allclose(a.grad.double(), b.grad, atol=1e-5)
