"""varattn-aer: precision, recall and AER on hand-made gold sets, every gold format, errors.

The hand-made corpus (links are (source, target)):

    sentence 1: sure {0-0, 2-2}, possible-only {1-1, 1-2}; predicted {0-0, 1-1, 2-1}
    sentence 2: sure {0-1, 1-0};                            predicted {0-1, 1-1}

|A| = 5, |S| = 4, |A ∩ S| = |{0-0}| + |{0-1}| = 2, |A ∩ P| = |{0-0, 1-1}| + |{0-1}| = 3, so
precision = 3/5, recall = 2/4, AER = 1 - (2 + 3) / (5 + 4) = 4/9.
"""

import json
from fractions import Fraction

import pytest
from helpers import fairseq_cli, run_aer
from hypothesis import given, settings
from hypothesis import strategies as st

from var_attn_plugin.tools.aer import (
    GoldAlignment,
    NullLinks,
    UsageError,
    parse_pharaoh_line,
    read_gold,
    read_prediction,
    score,
)

PRECISION, RECALL, AER = Fraction(3, 5), Fraction(2, 4), 1 - Fraction(2 + 3, 5 + 4)

PHARAOH_GOLD = "0-0 1?1 2-2-S 1-2-P\n0-1 1-0\n"
NAACL_GOLD_ONE_BASED = "1 1 1 S\n1 2 2 P\n1 3 3\n1 2 3 P 0.7\n2 1 2 S\n2 2 1\n"
PREDICTION = "0-0 1-1 2-1\n0-1 1-1\n"
PREDICTION_REVERSED = "0-0 1-1 1-2\n1-0 1-1\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_expected(scores):
    assert scores.precision == pytest.approx(float(PRECISION))
    assert scores.recall == pytest.approx(float(RECALL))
    assert scores.aer == pytest.approx(float(AER))
    assert (scores.predicted, scores.sure, scores.possible) == (5, 4, 6)


def test_pharaoh_gold_by_hand(tmp_path):
    pred = read_prediction(write(tmp_path, "pred", PREDICTION))
    gold = read_gold(write(tmp_path, "gold", PHARAOH_GOLD), len(pred))
    assert gold[0] == GoldAlignment(frozenset({(0, 0), (2, 2)}), frozenset({(0, 0), (2, 2), (1, 1), (1, 2)}))
    assert_expected(score(gold, pred))


@pytest.mark.parametrize("gold_format", ["auto", "naacl"])
def test_naacl_gold_one_based_equals_pharaoh(tmp_path, gold_format):
    pred = read_prediction(write(tmp_path, "pred", PREDICTION))
    gold = read_gold(write(tmp_path, "gold", NAACL_GOLD_ONE_BASED), len(pred), gold_format, one_based=True)
    assert gold == read_gold(write(tmp_path, "gold.pharaoh", PHARAOH_GOLD), len(pred))
    assert_expected(score(gold, pred))


def test_one_based_pharaoh_and_null_links(tmp_path):
    # every position + 1, and a NULL link (position 0) that --drop-null-links leaves out
    shifted = "1-1 2?2 3-3-S 2-3-P 0-2\n1-2 2-1\n"
    pred = read_prediction(write(tmp_path, "pred", PREDICTION))
    null_links = NullLinks(drop=True)
    gold = read_gold(write(tmp_path, "gold", shifted), len(pred), one_based=True, null_links=null_links)
    assert_expected(score(gold, pred))
    assert null_links.dropped == 1
    with pytest.raises(UsageError, match="gold:1: link '0-2' has position 0"):
        read_gold(write(tmp_path, "gold", shifted), len(pred), one_based=True)


def test_sentences_without_gold_links_in_naacl(tmp_path):
    # sentence 2 of 3 has no links; ids start at 0 here
    gold = read_gold(write(tmp_path, "gold", "0 0 0\n2 1 1 P\n"), 3, "naacl", first_sentence_id=0)
    assert [len(g.possible) for g in gold] == [1, 0, 1]
    assert [len(g.sure) for g in gold] == [1, 0, 0]


def test_reverse_swaps_the_prediction(tmp_path):
    pred = read_prediction(write(tmp_path, "pred", PREDICTION_REVERSED), reverse=True)
    assert pred == read_prediction(write(tmp_path, "pred2", PREDICTION))


links = st.sets(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(links, links), min_size=1, max_size=4))
def test_aer_is_one_minus_f1_when_all_gold_links_are_sure(pairs):
    """With P = S, AER = 1 - 2|A∩S| / (|A| + |S|), i.e. 1 - F1 of precision and recall."""
    gold = [GoldAlignment(frozenset(s), frozenset(s)) for s, _ in pairs]
    scores = score(gold, [a for _, a in pairs])
    a = sum(len(p) for _, p in pairs)
    s = sum(len(g) for g, _ in pairs)
    if a and s:
        hits = sum(len(g & p) for g, p in pairs)
        assert scores.precision == pytest.approx(hits / a)
        assert scores.recall == pytest.approx(hits / s)
        f1 = 0.0 if hits == 0 else 2 * scores.precision * scores.recall / (scores.precision + scores.recall)
        assert scores.aer == pytest.approx(1 - f1)


def test_perfect_prediction_scores_zero_aer():
    gold = [GoldAlignment.from_links({(0, 0), (1, 2)}, {(2, 1)})]
    scores = score(gold, [{(0, 0), (1, 2)}])
    assert (scores.precision, scores.recall, scores.aer) == (1.0, 1.0, 0.0)
    # adding a possible link keeps precision at 1 and AER at 0
    assert score(gold, [{(0, 0), (1, 2), (2, 1)}]).aer == 0.0


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize("line, bad", [
    ("0-0 1_2", "1_2"),
    ("0-0 1-x", "1-x"),
    ("0-0 -1-2", "-1-2"),
    ("0-1-Q", "0-1-Q"),
    ("0?1-S", "0?1-S"),
])
def test_malformed_pharaoh_names_file_line_token(line, bad):
    with pytest.raises(UsageError) as info:
        parse_pharaoh_line(line, "gold.txt:7")
    message = str(info.value)
    assert "gold.txt:7" in message and repr(bad) in message
    assert "expected" in message or "drop the" in message


@pytest.mark.parametrize("text, needle", [
    ("1 1 1 S\n1 2\n", "2 fields"),
    ("1 1 1 S\n1 x 2\n", "bad i 'x'"),
    ("1 1 1 S\n1 2 2 Q\n", "bad label 'Q'"),
    ("1 1 1 S\n1 2 2 P high\n", "bad confidence 'high'"),
])
def test_malformed_naacl_names_line_and_field(tmp_path, text, needle):
    with pytest.raises(UsageError, match=f"gold:2: {needle}"):
        read_gold(write(tmp_path, "gold", text), 1, "naacl", one_based=True)


def test_mismatched_sentence_counts(tmp_path):
    with pytest.raises(UsageError, match="has 2 lines .* prediction has 3"):
        read_gold(write(tmp_path, "gold", PHARAOH_GOLD), 3)
    with pytest.raises(UsageError, match="from 1 to 2 .2 sentences. but the prediction has 3"):
        read_gold(write(tmp_path, "gold", NAACL_GOLD_ONE_BASED), 3, "naacl", one_based=True)


def test_undetectable_format_asks_for_the_flag(tmp_path):
    with pytest.raises(UsageError, match="gold:2: cannot tell .* --gold-format"):
        read_gold(write(tmp_path, "gold", "\nfoo bar\n"), 2)
    with pytest.raises(UsageError, match="--gold-format naacl"):
        read_gold(write(tmp_path, "gold", "1 1 1\n"), 1, "pharaoh")


# ------------------------------------------------------------------ the console script


def test_command_line_text_and_json(tmp_path):
    gold = write(tmp_path, "gold.naacl", NAACL_GOLD_ONE_BASED)
    pred = write(tmp_path, "pred.txt", PREDICTION_REVERSED)
    out = fairseq_cli("varattn-aer", gold, pred, "--one-based", "--reverse").stdout.splitlines()
    assert [line.split(":")[0] for line in out] == ["precision", "recall", "aer"]
    assert [float(line.split(":")[1]) for line in out] == pytest.approx(
        [float(PRECISION), float(RECALL), float(AER)], abs=1e-4)
    values = json.loads(fairseq_cli("varattn-aer", gold, pred, "--one-based", "--reverse", "--json").stdout)
    assert values["aer"] == pytest.approx(float(AER))
    assert (values["predicted"], values["sure"], values["predicted_and_possible"]) == (5, 4, 3)


def test_command_line_error_is_a_message_not_a_traceback(tmp_path):
    gold = write(tmp_path, "gold.txt", "0-0\n0-0 1=1\n")
    proc = fairseq_cli("varattn-aer", gold, write(tmp_path, "pred.txt", "0-0\n0-0\n"), check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{gold}:2: bad link '1=1'" in proc.stderr


def test_a_link_beyond_the_gold_is_named_and_an_error_with_the_lengths(tmp_path, capsys):
    """Without --source/--target a predicted link beyond every gold link of its sentence is
    named (file:line) in a warning that asks for them; with them it is an error."""
    gold = write(tmp_path, "gold", "0-0 1-1 2-2 3-3\n\n0-0 1-1\n")
    pred = write(tmp_path, "pred", "0-0 1-1 2-2 55-1\n7-7\n0-0 1-1\n")  # line 2: no gold link, nothing known
    code, out, err = run_aer(capsys, gold, pred)
    assert code == 0 and out.startswith("precision: ")
    assert (f"varattn-aer: warning: {pred}:1: link 55-1 (source-target) lies beyond every gold link of its sentence "
            "(they reach source position 3 and target position 3)") in err
    assert f"{pred}:2" not in err and f"{pred}:3" not in err
    assert "1 line of" in err and "pass --source and --target" in err

    source = write(tmp_path, "source", "a b c d\ne f g h i j k l\nm n\n")
    target = write(tmp_path, "target", "A B C D\nE F G H I J K L\nM N\n")
    code, out, err = run_aer(capsys, gold, pred, "--source", source, "--target", target)
    assert code == 1 and out == ""
    assert err == (f"varattn-aer: error: {pred}:1: link 55-1 (source-target) lies outside the sentence pair (4 source "
                   "and 4 target tokens in --source/--target, so positions run from 0 to 3 and 3); check that --source "
                   "and --target are the text the links index (words for varattn-align --words, else the pieces of "
                   "the data-bin) and that --reverse is right\n")

    # links inside the gold's reach: no warning
    code, _, err = run_aer(capsys, gold, write(tmp_path, "inside", "0-0 3-3\n\n1-1\n"))
    assert code == 0 and err == ""


def test_command_line_mistakes_exit_1_with_one_line(tmp_path, capsys):
    gold = write(tmp_path, "gold", "0-0\n")
    for argv, message in (([gold], "the following arguments are required: PRED"),
                          ([gold, gold, "--source", gold], "--source and --target go together"),
                          ([gold, gold, "--gold-format", "x"], "argument --gold-format: invalid choice: 'x'")):
        code, out, err = run_aer(capsys, *argv)
        assert code == 1 and out == "" and len(err.splitlines()) == 1
        assert err.startswith(f"varattn-aer: error: {message}") and err.endswith("(see varattn-aer --help)\n")


def test_a_closed_pipe_ends_quietly(tmp_path, capsys, monkeypatch):
    import io
    import sys

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    gold = write(tmp_path, "gold", "0-0\n")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code, _, err = run_aer(capsys, gold, gold)
    assert code == 0 and err == ""
