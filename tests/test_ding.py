"""The Ding dictionary: sentence extraction (on a hand-written sample with the format's
quirks), the leak-free deterministic split, fetching and the command line."""

import gzip
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from var_attn_plugin.data import ding
from var_attn_plugin.data.ding import (
    UsageError,
    clean_side,
    extract_pairs,
    group_key,
    is_sentence,
    parse_line,
    read_dictionary,
    split_pairs,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ding_sample.txt"

# What tests/fixtures/ding_sample.txt must give, line by line (comments, sub-entries that
# are not sentences and malformed lines give nothing).
EXPECTED_PAIRS = [
    # "Raunen {n}; Geraune {n} | Ein Raunen ...": only the second sub-entry is a sentence
    ("Ein Raunen ging durch die Menge.", "A murmur went through the crowd."),
    # "Oh Schreck!" has 2 words; [humor.] is stripped from both sides
    ("Oh Schreck, es fehlen zwei Knöpfe!", "Horrors, two buttons are missing!"),
    # "[Dt.]" goes with the space before it; the first "; " alternative on each side
    ("Du gehst mir auf den Geist!", "You’re a pain in the neck."),
    # "Er sucht etw." / "He is looking for sth." end in placeholders: phrases, not sentences
    ("Wir haben ihn überall gesucht.", "We looked for him everywhere."),
    # "{+Gen.}" stripped before the final full stop
    ("Wenn die Symptome bleiben, Rat einholen.", "If the symptoms persist, seek medical advice."),
    ("Das klappt nicht.", "It won’t work out."),
    # annotations go before alternatives: "{sehen; sah}" must not cut the sentence
    ("Er sah den Hund.", "He saw the dog."),
    ("Wie spät ist es?", "What time is it?"),
    ("Kommst du mit?", "Are you coming?"),
    # nested annotations "{Fahne [ugs.]}" and "{[coll.]}"
    ("Er hatte eine Nikotinfahne.", "He whiffed of nicotine."),
    ("Sie kommt morgen an.", "She will arrive tomorrow."),
]


def test_fixture_gives_the_expected_pairs_and_counts():
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    pairs, stats = extract_pairs(lines)
    assert pairs == EXPECTED_PAIRS
    assert stats.lines == len(lines)
    assert stats.comments == 3  # two "#" lines and one blank line
    # unequal sub-entries, no " :: ", two " :: "
    assert stats.malformed == 3
    assert stats.pairs == len(EXPECTED_PAIRS)


@pytest.mark.parametrize("line", [
    "Das war nicht meine Absicht. | Das ist zu viel. :: Such was not my intention.",
    "a line without the separator.",
    "Zwei Trennzeichen. :: Two separators. :: Too many.",
])
def test_malformed_lines_are_none(line):
    assert parse_line(line) is None


@pytest.mark.parametrize("line", ["# Version :: devel", "", "   "])
def test_comment_and_blank_lines_are_empty(line):
    assert parse_line(line) == []


@pytest.mark.parametrize("raw, cleaned", [
    ("Aal {m} [cook.]", "Aal"),
    ("Geist [Dt.]!; Du nervst!", "Geist!"),
    ("to seek {sought; sought} sth.; to ask", "to seek sth."),
    ("eine {Fahne [ugs.]}  Nikotinfahne.", "eine Nikotinfahne."),
    ("  viel   Platz  ", "viel Platz"),
    ("(nach) links abbiegen", "(nach) links abbiegen"),  # round brackets are text
])
def test_clean_side(raw, cleaned):
    assert clean_side(raw) == cleaned


@pytest.mark.parametrize("text, expected", [
    ("Das klappt nicht.", True),
    ("Wie spät ist es?", True),
    ("Geh weg!", False),  # 2 words
    ("Das ist gut", False),  # no final punctuation
    ("Er denkt an etw.", False),  # placeholder
    ("the biology of sb./sth.", False),  # placeholder after a slash
    ("Er sprach mit Dr. Etw.", True),  # only the placeholders themselves, case-sensitive
    ("Ein Satz mit {Rest.", False),  # unbalanced annotation
])
def test_is_sentence(text, expected):
    assert is_sentence(text) is expected


# ----------------------------------------------------------------------------- split


def assert_no_leak(splits):
    keys = {split: {group_key(de) for de, _ in pairs} for split, pairs in splits.items()}
    assert not keys["train"] & keys["valid"]
    assert not keys["train"] & keys["test"]
    assert not keys["valid"] & keys["test"]


pair_lists = st.lists(st.tuples(st.sampled_from(["Ein Hund.", "ein  hund.", "Zwei.", "Drei Katzen.", "Vier!",
                                                 "Fünf?", "Sechs Mäuse.", "Sieben."]),
                                st.sampled_from(["One.", "Two.", "Three."])), min_size=12, max_size=40)


@settings(max_examples=60, deadline=None)
@given(pairs=pair_lists, valid_size=st.integers(0, 3), test_size=st.integers(0, 3), seed=st.integers(0, 5))
def test_split_properties(pairs, valid_size, test_size, seed):
    distinct = list(dict.fromkeys(pairs))
    if valid_size + test_size >= len(distinct):
        with pytest.raises(ValueError, match="--valid-size"):
            split_pairs(pairs, valid_size, test_size, seed)
        return
    splits = split_pairs(pairs, valid_size, test_size, seed)
    # every distinct pair exactly once, in input order within each split
    assert sorted(sum(splits.values(), [])) == sorted(distinct)
    for split_list in splits.values():
        assert split_list == [p for p in distinct if p in split_list]
    assert len(splits["valid"]) <= valid_size and len(splits["test"]) <= test_size
    assert_no_leak(splits)
    # the split depends on the sentences and the seed only, not on their order
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    again = split_pairs(shuffled, valid_size, test_size, seed)
    assert {k: set(v) for k, v in again.items()} == {k: set(v) for k, v in splits.items()}


def numbered_pairs(n, translations=1):
    return [(f"Satz Nummer {i}.", f"Sentence number {i}{'!' * k}.") for i in range(n) for k in range(translations)]


def test_split_sizes_are_exact_for_single_sentences_and_the_seed_matters():
    pairs = numbered_pairs(200)
    splits = split_pairs(pairs, valid_size=20, test_size=30, seed=1)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [150, 20, 30]
    assert splits == split_pairs(pairs, 20, 30, seed=1)  # deterministic
    assert set(splits["test"]) != set(split_pairs(pairs, 20, 30, seed=2)["test"])


def test_all_translations_of_a_sentence_stay_together():
    pairs = numbered_pairs(60, translations=3)  # 60 German sentences, 3 English each
    splits = split_pairs(pairs, valid_size=9, test_size=12, seed=3)
    assert_no_leak(splits)
    assert [len(splits[s]) for s in ("valid", "test")] == [9, 12]  # whole groups of 3 fit exactly
    for pairs_of_split in splits.values():
        germans = [de for de, _ in pairs_of_split]
        assert all(germans.count(de) == 3 for de in germans)


def test_duplicates_are_dropped():
    pairs = numbered_pairs(30) * 2
    splits = split_pairs(pairs, 5, 5, seed=0)
    assert sum(map(len, splits.values())) == 30


# ----------------------------------------------------------------------------- files and fetching


def test_command_line_writes_aligned_splits(tmp_path):
    ding_file = tmp_path / "de-en"
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    lines += [f"Wort {i} {{n}} | Das ist Satz {i}. :: word {i} | This is sentence {i}." for i in range(40)]
    ding_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    ding.main(["--ding-file", str(ding_file), "-o", str(out), "--valid-size", "5", "--test-size", "7",
               "--max-train", "20", "--seed", "4"])
    sizes = {}
    for split in ("train", "valid", "test"):
        de = (out / f"{split}.de").read_text(encoding="utf-8").splitlines()
        en = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
        assert len(de) == len(en)
        sizes[split] = len(de)
        for pair in zip(de, en):  # lines stay aligned
            assert pair in EXPECTED_PAIRS or pair[0].replace("Das ist Satz", "This is sentence") == pair[1]
    assert sizes == {"train": 20, "valid": 5, "test": 7}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"] == len(EXPECTED_PAIRS) + 40 and stats["distinct_pairs"] == len(EXPECTED_PAIRS) + 40
    assert stats["train_pairs"] == 20 and stats["malformed"] == 3


def test_upstream_fallback_decompresses(tmp_path, monkeypatch):
    gz = tmp_path / "de-en.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(FIXTURE.read_text(encoding="utf-8"))
    monkeypatch.setattr(ding, "fetch_from_debian", lambda workdir: None)
    path = ding.fetch_ding(tmp_path / "download", url=gz.resolve().as_uri())
    assert path == (tmp_path / "download" / "de-en").resolve()
    assert path.read_text(encoding="utf-8") == FIXTURE.read_text(encoding="utf-8")
    assert ding.fetch_ding(tmp_path / "download") == path  # fetched once
    assert [p.name for p in (tmp_path / "download").iterdir()] == ["de-en"]  # no temporary files left


def test_unreachable_sources_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(ding, "fetch_from_debian", lambda workdir: None)
    with pytest.raises(UsageError, match="--ding-file"):
        ding.fetch_ding(tmp_path / "download", url=(tmp_path / "missing.gz").as_uri())


def test_unreadable_dictionary_files_name_the_flag(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_dictionary(tmp_path / "nothing")
    compressed = tmp_path / "de-en.txt.gz"
    compressed.write_bytes(gzip.compress("Das ist es. :: That is it.\n".encode() * 50))
    with pytest.raises(UsageError, match="gunzip"):
        read_dictionary(compressed)
    other = tmp_path / "other.txt"
    other.write_text("just text\n")
    with pytest.raises(UsageError, match="German :: English"):
        read_dictionary(other)
