"""The one answer extractor: its documented order, real-model phrasings, and linear time."""

import signal

import pytest

from acpo.answers import answers_equivalent, extract_answer, extract_final_answer, last_number
from acpo.rewards import answer_reward


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3*4=12\n#### 12", "12"),  # 1. the #### line
        ("#### 7\nThe answer is 9.", "7"),  # #### wins over a later phrase
        ("x = 3\nso \\boxed{5}, and 6 more", "5"),  # 2. the last \boxed{}
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{4}\nThe answer is 9.", "4"),  # boxed before "the answer is"
        ("12 + 7 = 19. The answer is 19 apples.", "19"),  # 3. "the answer is"
        ("The final answer is: $1,200.", "1200"),
        ("So the answer is 18.\nThat took 3 steps.", "18"),  # the phrase wins over a later number
        ("She has 3 cats and 12 dogs", "12"),  # 4. the last number
        ("Total: $2,500.50 spent", "2500.50"),
        ("no digits at all", None),
    ],
)
def test_extract_answer_order(text, expected):
    assert extract_answer(text) == expected


def test_hash_line_is_stripped_and_first_wins():
    assert extract_final_answer("  ####   42  \n#### 43") == "42"
    assert extract_final_answer("a #### b") is None  # the marker must start a line


@pytest.mark.parametrize(
    "predicted, gold, same",
    [("18", "18.0", True), ("$1,200", "1200", True), ("0.5", "\\frac{1}{2}", True), ("17", "18", False),
     ("x+1", "1+x", True), (None, "3", False)],
)
def test_answers_equivalent(predicted, gold, same):
    assert answers_equivalent(predicted, gold) is same


def test_answer_reward_reads_what_a_real_model_writes():
    texts = ["12 + 7 * 3 = 12 + 21 = 33\n#### 33", "so \\boxed{33}", "The answer is 33.", "It is $33", "12 + 24 = 36"]
    assert answer_reward(None, texts, answer=["33"] * 5) == [1.0, 1.0, 1.0, 1.0, 0.0]


def _alarm(seconds):
    def handler(signum, frame):
        raise TimeoutError(f"answer extraction took over {seconds} s: not linear")

    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)


@pytest.mark.parametrize("hostile", ["#### 1" + " " * 200_000 + "x", "1" + " " * 200_000, "answer is " * 20_000,
                                     "#" * 200_000, "\\boxed{" * 30_000, "1," * 100_000])
def test_extraction_is_linear_on_hostile_text(hostile):
    """A completion of 200 KB is read in well under the alarm (the old regex took minutes)."""
    _alarm(5)
    try:
        extract_answer(hostile)
        last_number(hostile)
        answer_reward(None, [hostile], answer=["1"])
    finally:
        signal.alarm(0)
