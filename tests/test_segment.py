"""Segmentation: exact partitions, char spans that round-trip, and each method's rule."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acpo.segment import SEGMENTATIONS, SegmentConfig, resolve_segmentation, segment
from acpo.tokens import encode_with_offsets, offsets_by_decoding

ALPHABET = "ab 12+=\n.#:Step"
METHODS = [*SEGMENTATIONS, "fixed-3"]


def assert_partition(steps, text, n_tokens):
    assert steps[0].token_start == 0 and steps[-1].token_end == n_tokens
    assert steps[0].char_start == 0 and steps[-1].char_end == len(text)
    for k, (a, b) in enumerate(zip(steps, steps[1:])):
        assert a.index == k and b.index == k + 1
        assert a.token_end == b.token_start and a.char_end == b.char_start
    assert all(s.token_end > s.token_start for s in steps)
    for s in steps:
        assert text[s.char_start : s.char_end] == s.text
    assert "".join(s.text for s in steps) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=ALPHABET, min_size=1, max_size=80), seed=st.integers(0, 10_000))
@pytest.mark.parametrize("method", METHODS)
def test_every_segmentation_partitions_tokens_and_chars(method, text, seed, char_tok, bpe_tok):
    for tok in (char_tok, bpe_tok):
        ids, offsets = encode_with_offsets(tok, text)
        if not ids:
            continue
        ent = torch.rand(len(ids), generator=torch.Generator().manual_seed(seed))
        cfg = SegmentConfig(max_reasoning_steps=3)
        assert_partition(segment(text, offsets, ent, method, cfg), text, len(ids))


def lines_of(text, tok):
    ids, offsets = encode_with_offsets(tok, text)
    return [s.text for s in segment(text, offsets, torch.zeros(len(ids)), "lines")]


def test_lines_split_after_newlines_and_merge_blank_lines(char_tok, bpe_tok):
    text = "3*4=12\n\n7-12=-5\n#### -5"
    for tok in (char_tok, bpe_tok):
        assert lines_of(text, tok) == ["3*4=12\n\n", "7-12=-5\n", "#### -5"]
    assert lines_of("\n\nab\n", char_tok) == ["\n\nab\n"]


def test_markers_start_steps_at_step_labels(char_tok):
    text = "Step 1: a=1. Step 2: b=2. <step>c"
    ids, offsets = encode_with_offsets(char_tok, text)
    steps = segment(text, offsets, torch.zeros(len(ids)), "markers")
    assert [s.text for s in steps] == ["Step 1: a=1. ", "Step 2: b=2. ", "<step>c"]


def test_entropy_boundaries_at_top_quantile_with_min_length(char_tok):
    text = "abcdefghijkl"
    ids, offsets = encode_with_offsets(char_tok, text)
    ent = torch.zeros(12)
    ent[[2, 4, 9]] = 5.0  # 2 is too close to the start (m=3), 4 and 9 make boundaries
    steps = segment(text, offsets, ent, "entropy", SegmentConfig(entropy_quantile=0.25, min_step_tokens=3))
    assert [(s.token_start, s.token_end) for s in steps] == [(0, 4), (4, 9), (9, 12)]
    ent[11] = 9.0  # a boundary at 11 would leave a 1-token last step: merged away
    steps = segment(text, offsets, ent, "entropy", SegmentConfig(entropy_quantile=0.34, min_step_tokens=3))
    assert [(s.token_start, s.token_end) for s in steps] == [(0, 4), (4, 9), (9, 12)]


def test_hybrid_merges_undecided_lines_and_caps_steps(char_tok):
    text = "ab\ncd\nef\ngh\n"
    ids, offsets = encode_with_offsets(char_tok, text)
    ent = torch.zeros(len(ids))
    ent[[0, 6]] = 3.0  # decisions only in lines 1 and 3: lines 2 and 4 join their predecessor
    steps = segment(text, offsets, ent, "hybrid", SegmentConfig(entropy_quantile=0.1))
    assert [s.text for s in steps] == ["ab\ncd\n", "ef\ngh\n"]
    ent = torch.tensor([1.0, 1, 1, 5, 5, 5, 1, 1, 1, 4, 4, 4])  # every line decided
    steps = segment(text, offsets, ent, "hybrid", SegmentConfig(entropy_quantile=1.0, max_reasoning_steps=2))
    # line sums 3, 15, 3, 12: merge ef+gh (15) first, then ab+cd (18 < 30)
    assert [s.text for s in steps] == ["ab\ncd\n", "ef\ngh\n"]


def test_fixed_n(char_tok):
    ids, offsets = encode_with_offsets(char_tok, "abcdefg")
    steps = segment("abcdefg", offsets, torch.zeros(7), "fixed-3")
    assert [s.text for s in steps] == ["abc", "def", "g"]


def test_unknown_segmentation_lists_valid_names():
    with pytest.raises(ValueError, match="valid: lines, markers, entropy, hybrid, fixed, fixed-N"):
        resolve_segmentation("sentences")


def test_empty_completion_is_an_error():
    with pytest.raises(ValueError, match="empty completion"):
        segment("", [], [], "lines")


def test_decoding_fallback_matches_offset_mapping(bpe_tok):
    text = "first we compute\n\nfinal line"
    ids, offsets = encode_with_offsets(bpe_tok, text)
    assert offsets_by_decoding(bpe_tok, ids, text) == offsets
