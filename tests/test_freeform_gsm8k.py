"""The free-form checker on GSM8K's own reference solutions and on a calculator's float noise.

GSM8K's reference solutions reach the right answer, yet a handful state a false computation in their prose
(checked by hand, listed in ``GSM8K_SLIPS``); the checker must flag exactly those. A calculator annotation
whose result is a float printed in full (``<<11/18*162=99.00000000000001>>``) is right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acpo.tasks.freeform import check_freeform, line_status

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"

GSM8K_SLIPS = {
    167: "192*100=$1920", 168: "6*2.5 = $", 198: "6/3=.5", 224: "4080 + 4080 / 2 = 4000 + 2040", 502: "3/1=1",
    716: "100 * 0.75 = $0.75", 3002: "8*3 = <<80*3=240>>240", 3334: "$4200+$3000 = $8600", 3409: "10 x .5 = 10",
    4593: "14 / 1 / 4 = 14 * 4", 4691: "2*8 = 24", 4973: "200*.55=100", 5195: "5 x 1/2 = 10",
    5350: "13 marbles + 4 marbles + 16 marbles = 45", 5781: "7+9+1+2 = $19.50", 6157: "70 + 40 = 100",
    6256: "10 x 1,248 = 11,480", 6700: "2 / 12 = .125", 6713: "3 x (8/16) = 6", 6760: "4+4+6 = 18",
    6812: "50-8 = <<52-8=44>>44", 7178: "1152/ 1,536 = .5", 7444: "14*20=140",
}
"""Rows of GSM8K train whose reference solution states a false computation (row -> the false one), each
checked by hand: 192*100 is 19200, 3/1 is 3, 2*8 is 16, ... The answers are right; the prose slipped."""


@pytest.mark.parametrize("line", [
    "Each costs 11/18*162 = <<11/18*162=99.00000000000001>>99 dollars",
    "<<0.1+0.2=0.30000000000000004>>",
    "So 1.1 * 3 = <<1.1*3=3.3000000000000003>>3.3",
    "<<11/18*162=99>>99",
])
def test_a_calculators_float_noise_is_right(line):
    assert line_status(line) == "right"


@pytest.mark.parametrize("line", [
    "<<11/18*162=99.1>>99.1",
    "<<11/18*162=99.0000001>>99",  # 7 decimals is a number someone wrote, not a float printed in full
    "<<11/18*162=98.99999999999>>99",  # 13 significant digits: off by 1e-11, more than float rounding
])
def test_a_wrong_result_is_still_wrong_however_many_digits_it_has(line):
    assert line_status(line) == "wrong"


@pytest.mark.parametrize("line, status", [
    ("He spends 50 cents because $1 / 2 = 50 cents", "uncheckable"),
    ("So, Bea earned $2.50 - $2.24 = 26 cents more than Dawn.", "uncheckable"),
    ("The shop loses 5 thousand dollars a day, so in three days it loses 5 * 3 = $15,000.", "uncheckable"),
    ("So, Bea earned $2.50 - $2.24 = 27 cents more than Dawn.", "wrong"),  # off by more than the unit change
    ("The shop loses 5 thousand dollars a day, so in three days it loses 5 * 3 = $16,000.", "wrong"),
    ("So it cost 192*100=$1920", "wrong"),  # no scale word: a slip
])
def test_a_change_of_unit_by_a_scale_word_is_not_a_false_computation(line, status):
    assert line_status(line) == status


@pytest.mark.skipif(not GSM8K.exists(), reason=f"GSM8K train is not at {GSM8K} (the shared data folder)")
def test_on_gsm8k_reference_solutions_only_the_real_slips_are_flagged():
    flagged = {}
    for row, line in enumerate(GSM8K.read_text().splitlines()):
        solution = json.loads(line)["answer"]
        check = check_freeform(solution, solution.split("####")[-1].strip())
        assert check.answer_correct, row
        if check.first_error is not None:
            flagged[row] = check.steps[check.first_error]
    assert set(flagged) == set(GSM8K_SLIPS)
    for row, slip in GSM8K_SLIPS.items():
        assert slip in flagged[row], (row, flagged[row])
