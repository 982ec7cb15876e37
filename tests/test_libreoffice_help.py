"""LibreOffice's help pages (German-English): pairing by page and paragraph id, cleaning,
sentence splitting, deduplication, the split without near-duplicate leaks, the command line;
and the retrieval baseline. Help pages and catalogues are written here (no network)."""

import json
import random
from pathlib import Path
from typing import Dict

import pytest
from test_libreoffice import write_mo

from var_attn_plugin.data import libreoffice_help
from var_attn_plugin.data.libreoffice_help import (
    UsageError,
    clean_paragraph,
    extract_help_pairs,
    find_near_duplicates,
    jaccard,
    near_duplicate_key,
    read_help_page,
    split_pairs,
    split_sentences,
)
from varattn_experiments import retrieval

HEADER = {"de": "Hilfe für LibreOffice 7.4", "en-US": "LibreOffice 7.4 Help"}


def page(language: str, body: str) -> str:
    """A help page as the packages ship it: a header paragraph without id, then the body."""
    return (f'<!DOCTYPE html>\n<html lang="{language}" dir="ltr">\n<head>\n<meta charset="utf-8">\n'
            f"<title>Titel</title>\n</head>\n<body>\n"
            f'<header id="TopLeftHeader"><a class="logo" href="x.html"><p dir="auto">{HEADER[language]}</p></a>'
            f'</header>\n<div id="DisplayArea">\n{body}\n</div>\n</body>\n</html>\n')


def switch(mac: str, default: str, n: int) -> str:
    """An inline platform switch: the macOS variant and the default one, both hidden."""
    return (f'<span id="swlnsys{n}" class="switchinline"><span hidden="true" id="MAC{n}" class="MAC">'
            f'<span class="keycode">{mac}</span></span><span hidden="true" id="default{n}">'
            f'<span class="keycode">{default}</span></span></span>')


def p(ident: str, text: str, cls: str = "paragraph") -> str:
    return f'<p id="{ident}" class="{cls}" dir="auto">{text}</p>'


# German and English pages; the English ones list their paragraphs in another order
PAGES: Dict[str, Dict[str, str]] = {
    "de": {
        "text/shared/a.html": "\n".join([
            '<h1 id="hd_id1" dir="auto">Eine neue Datei anlegen</h1>',
            p("par_id2", '<span class="avis">Erstellt ein neues $[officename]-Dokument.</span> Danach speichern '
                         f'Sie es mit {switch("Befehl", "Strg", 1)}<span class="keycode">+S</span> sofort.'),
            p("par_id3", "Dim a As Integer ' eine Zahl", cls="code"),
            p("par_id4", "Dieser Absatz fehlt im Englischen."),
            p("par_id5", "Ein Absatz. Noch ein Satz hier."),
            p("par_id6", "Zu kurz"),
            p("par_id7", "Wählen Sie z. B. <span class=\"menuitem\">Format&nbsp;– Zellen</span>."),
        ]),
        "text/shared/b.html": "\n".join([
            p("par_id2", "Öffnet die Datei im Fenster."),  # same id as on a.html, other text
            p("par_id8", "Erstellt ein neues LibreOffice-Dokument."),  # a sentence of a.html again
            p("par_id9", "Das ist ein<br>Test mit Umbruch."),
            p("par_id10", "Erster Text mit id zehn."),
            p("par_id10", "Zweiter Text mit id zehn."),  # an id twice: matched by occurrence
            p("par_id11", "LibreOffice Calc Writer Impress"),  # untranslated
        ]),
        "text/shared/c.html": p("par_id1", "Nur auf Deutsch vorhanden hier."),  # no English page
    },
    "en-US": {
        "text/shared/a.html": "\n".join([
            p("par_id7", "Choose e.g. <span class=\"menuitem\">Format - Cells</span>."),
            p("par_id5", "One paragraph with one sentence here."),
            '<h1 id="hd_id1" dir="auto">Create a new file</h1>',
            p("par_id6", "Too short"),
            p("par_id3", "Dim a As Integer ' a number", cls="code"),
            p("par_id2", '<span class="avis">Creates a new $[officename] document.</span> Then save it with '
                         f'{switch("Command", "Ctrl", 1)}<span class="keycode">+S</span> at once.'),
        ]),
        "text/shared/b.html": "\n".join([
            p("par_id10", "First text with id ten."),
            p("par_id10", "Second text with id ten."),
            p("par_id11", "LibreOffice Calc Writer Impress"),
            p("par_id9", "This is a<br>test with a break."),
            p("par_id8", "Creates a new LibreOffice document."),
            p("par_id2", "Opens the file in the window."),
        ]),
    },
}
EXPECTED_PAIRS = [  # in German page order, duplicates included
    ("Eine neue Datei anlegen", "Create a new file"),
    ("Erstellt ein neues LibreOffice-Dokument.", "Creates a new LibreOffice document."),
    ("Danach speichern Sie es mit Strg+S sofort.", "Then save it with Ctrl+S at once."),
    ("Ein Absatz. Noch ein Satz hier.", "One paragraph with one sentence here."),  # unequal: kept whole
    ("Wählen Sie z. B. Format – Zellen.", "Choose e.g. Format - Cells."),
    ("Öffnet die Datei im Fenster.", "Opens the file in the window."),
    ("Erstellt ein neues LibreOffice-Dokument.", "Creates a new LibreOffice document."),
    ("Das ist ein Test mit Umbruch.", "This is a test with a break."),
    ("Erster Text mit id zehn.", "First text with id ten."),
    ("Zweiter Text mit id zehn.", "Second text with id ten."),
]
EXPECTED_STATS = dict(
    help_pages_de=3, help_pages_en=2, help_pages_paired=2,
    paragraphs_de=12, paragraphs_en=11,  # the code paragraphs and the header do not count
    paragraphs_matched=11, paragraphs_distinct=11, paragraphs_split=1, paragraphs_unequal=1,
    candidates=12, too_short_or_long=1, untranslated=1, help_pairs=10,
)


@pytest.fixture
def help_dir(tmp_path) -> Path:
    root = tmp_path / "help"
    for language, pages in PAGES.items():
        for name, body in pages.items():
            path = root / language / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(page(language, body), encoding="utf-8")
    return root


def test_pages_pair_by_page_and_id_with_cleaning_and_sentence_split(help_dir):
    pairs, stats = extract_help_pairs(help_dir)
    assert pairs == EXPECTED_PAIRS
    for name, value in EXPECTED_STATS.items():
        assert getattr(stats, name) == value, name


def test_extracted_package_folder_is_found_below_usr_share(tmp_path, help_dir):
    extracted = tmp_path / "extracted"
    (extracted / libreoffice_help.HELP_ROOT).parent.mkdir(parents=True)
    help_dir.rename(extracted / libreoffice_help.HELP_ROOT)
    pairs, _ = extract_help_pairs(libreoffice_help.resolve_help_dir(extracted))
    assert pairs == EXPECTED_PAIRS


def test_page_parser_keeps_the_default_variant_and_skips_code(tmp_path):
    path = tmp_path / "x.html"
    path.write_text(page("de", "\n".join([
        p("par_id1", f"Drücken Sie {switch('Befehl', 'Strg', 2)}+C &amp; mehr"),
        p("par_id2", "x = 1", cls="code"),
        '<div class="tip"><p id="par_id3">Ein Tipp ohne Ende</div>',  # closed by the enclosing </div>
        '<table><tr><td><p id="par_id4" class="tablecontentintable">Zelle</td></tr></table>',
    ])), encoding="utf-8")
    assert read_help_page(path) == [("par_id1", "Drücken Sie Strg+C & mehr"), ("par_id3", "Ein Tipp ohne Ende"),
                                    ("par_id4", "Zelle")]


@pytest.mark.parametrize("raw, cleaned", [
    ("Ein neues $[officename]-Dokument", "Ein neues LibreOffice-Dokument"),
    ("%PRODUCTNAME Writer", "LibreOffice Writer"),
    ("Zell\u00adbezug  $A$1\u200b \n im_Feld", "Zellbezug $A$1 im_Feld"),  # cell references, identifiers stay
])
def test_clean_paragraph(raw, cleaned):
    assert clean_paragraph(raw) == cleaned


@pytest.mark.parametrize("text, sentences", [
    ("Wählen Sie z. B. Datei. Dann klicken Sie OK.", ["Wählen Sie z. B. Datei.", "Dann klicken Sie OK."]),
    ("Use e.g. File, i.e. Open. Then click OK!", ["Use e.g. File, i.e. Open.", "Then click OK!"]),
    ("Am 1. Januar ist es so. Gut.", ["Am 1. Januar ist es so.", "Gut."]),
    ("Bzw. Format usw. Mehr dazu bzw. Zellen.", ["Bzw. Format usw. Mehr dazu bzw. Zellen."]),
    ("Er sagte: „Hallo.“ Dann ging er.", ["Er sagte: „Hallo.“", "Dann ging er."]),
    ("Wählen Sie Datei - Öffnen... Der Dialog", ["Wählen Sie Datei - Öffnen... Der Dialog"]),
    ("Version 7.4. Neu ist", ["Version 7.4. Neu ist"]),
    ("see the file. then close it", ["see the file. then close it"]),  # lower case: no new sentence
])
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_near_duplicate_key():
    assert near_duplicate_key("Wählen Sie Format – Zeile 2.") == "wählen sie format zeile"
    assert near_duplicate_key("wählen sie FORMAT, Zeile (12)") == "wählen sie format zeile"
    assert near_duplicate_key("1 + 2") == "1 + 2"  # no letters: its own group


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 1.0])
def test_near_duplicates_equal_brute_force(threshold):
    rng = random.Random(threshold)
    vocabulary = list("abcdefghijkl")  # letters: digits would be dropped from the key

    def sentence():
        return " ".join(rng.sample(vocabulary, rng.randint(1, 7)))

    held_out = [sentence() for _ in range(40)]
    candidates = [sentence() for _ in range(300)]
    brute = [any(jaccard(set(c.split()), set(h.split())) >= threshold for h in held_out) for c in candidates]
    assert find_near_duplicates(held_out, candidates, threshold) == brute
    assert any(brute) and not all(brute)


def leaky_corpus():
    """Pairs full of near-duplicates: numbered templates, one-word variants, exact repeats."""
    rng = random.Random(0)
    vocabulary = sorted({"".join(rng.choices("abcdefghijklmnop", k=5)) for _ in range(300)})
    pairs = [(f"Wählen Sie Format – Zeile {n}.", f"Choose Format - Row {n}.") for n in range(8)]
    base = "Klicken Sie auf die Schaltfläche um das aktuelle {} sofort zu speichern".split()
    for word in ["Dokument", "Blatt", "Bild", "Diagramm", "Makro", "Formular", "Fenster", "Objekt"]:
        pairs.append((" ".join(base).format(word), f"Click the button to save the current {word} now"))
    for n in range(150):
        words = rng.sample(vocabulary, 6)
        pairs.append((" ".join(words), f"sentence {n}"))
    return pairs + pairs[:20]  # exact duplicates


def assert_no_leak(splits, threshold):
    train = [german for german, _ in splits["train"]]
    train_keys = {near_duplicate_key(german) for german in train}
    train_sets = [set(near_duplicate_key(german).split()) for german in train]
    for split in ("valid", "test"):
        for german, _ in splits[split]:
            assert near_duplicate_key(german) not in train_keys, german
            words = set(near_duplicate_key(german).split())
            assert max(jaccard(words, other) for other in train_sets) < threshold, german


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_split_has_no_held_out_sentence_or_near_duplicate_in_training(seed):
    pairs = leaky_corpus()
    splits, stats = split_pairs(pairs, valid_size=30, test_size=30, seed=seed)
    assert_no_leak(splits, libreoffice_help.NEAR_DUPLICATE_JACCARD)
    assert stats.distinct_pairs == len(set(pairs)) == 166
    assert stats.near_duplicate_groups == 1  # the numbered template
    assert (stats.train_pairs, stats.valid_pairs, stats.test_pairs) == tuple(len(splits[s]) for s in
                                                                             ("train", "valid", "test"))
    assert stats.valid_pairs == stats.test_pairs == 30
    assert stats.train_pairs + stats.valid_pairs + stats.test_pairs + stats.train_dropped_near_duplicates == 166
    template = {s for s in splits for german, _ in splits[s] if german.startswith("Wählen Sie Format")}
    assert len(template) <= 1  # a group stays together
    variants = {s for s in splits for german, _ in splits[s] if german.startswith("Klicken Sie")}
    assert variants & {"valid", "test"} and "train" not in variants  # held out: the other variants leave training
    assert stats.train_dropped_near_duplicates > 0


def test_split_rejects_sizes_that_leave_no_training_data():
    with pytest.raises(UsageError, match="--valid-size 5 \\+ --test-size 5"):
        split_pairs(leaky_corpus()[:8], 5, 5, 1)


def run_cli(args):
    libreoffice_help.main([str(a) for a in args])


def test_command_line_writes_splits_and_counts(tmp_path, help_dir):
    mo_dir = tmp_path / "mo"
    write_mo(mo_dir / "sw.mo", {"Save the &document now": "&Dokument jetzt speichern",
                                "Open File": "Datei öffnen"})  # the second: too short
    out = tmp_path / "out"
    run_cli(["--output-dir", out, "--help-dir", help_dir, "--mo-dir", mo_dir, "--valid-size", 2, "--test-size", 2])
    stats = json.loads((out / "stats.json").read_text())
    for name, value in EXPECTED_STATS.items():
        assert stats[name] == value, name
    assert (stats["ui_catalogues"], stats["ui_messages"], stats["ui_pairs"]) == (1, 2, 1)
    assert stats["pairs"] == 11 and stats["distinct_pairs"] == 10
    lines = {f"{s}.{lang}": (out / f"{s}.{lang}").read_text(encoding="utf-8").splitlines()
             for s in ("train", "valid", "test") for lang in ("de", "en")}
    for split in ("train", "valid", "test"):
        assert len(lines[f"{split}.de"]) == len(lines[f"{split}.en"]) == stats[f"{split}_pairs"]
    assert stats["valid_pairs"] == stats["test_pairs"] == 2
    assert stats["train_pairs"] + stats["train_dropped_near_duplicates"] == 6
    written = [pair for split in ("train", "valid", "test") for pair in zip(lines[f"{split}.de"], lines[f"{split}.en"])]
    expected = set(EXPECTED_PAIRS) | {("Dokument jetzt speichern", "Save the document now")}
    assert len(written) == len(set(written)) == 10 - stats["train_dropped_near_duplicates"]
    assert set(written) <= expected
    assert_no_leak({s: list(zip(lines[f"{s}.de"], lines[f"{s}.en"])) for s in ("train", "valid", "test")},
                   libreoffice_help.NEAR_DUPLICATE_JACCARD)


def test_command_line_same_seed_same_split(tmp_path, help_dir):
    for name in ("one", "two"):
        run_cli(["-o", tmp_path / name, "--help-dir", help_dir, "--no-ui-strings",
                 "--valid-size", 1, "--test-size", 1, "--seed", 7])
    for split in ("train", "valid", "test"):
        assert (tmp_path / "one" / f"{split}.de").read_text() == (tmp_path / "two" / f"{split}.de").read_text()


def test_folder_without_help_pages_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty" / "de").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["-o", tmp_path / "out", "--help-dir", tmp_path / "empty", "--no-ui-strings"])
    assert exit_info.value.code == 1  # a user error, as in every tool
    message = capsys.readouterr().err
    assert "--help-dir" in message and "no *.html help page" in message and "de/ and en-US/" in message
    with pytest.raises(UsageError, match="--help-dir"):
        extract_help_pairs(tmp_path / "empty")


def test_near_duplicate_threshold_is_checked(tmp_path, help_dir, capsys):
    with pytest.raises(SystemExit):
        run_cli(["-o", tmp_path / "out", "--help-dir", help_dir, "--no-ui-strings", "--valid-size", 1,
                 "--test-size", 1, "--near-duplicate-jaccard", 1.5])
    assert "--near-duplicate-jaccard 1.5" in capsys.readouterr().err


# ----------------------------------------------------------------------------- retrieval baseline


TRAIN_DE = ["Öffnet die Datei im Fenster.", "Speichert das aktuelle Dokument.", "Fügt eine neue Tabelle ein.",
            "Löscht die markierten Zellen."]
TRAIN_EN = ["Opens the file in the window.", "Saves the current document.", "Inserts a new table.",
            "Deletes the selected cells."]


@pytest.mark.parametrize("features", sorted(retrieval.FEATURES))
def test_retrieval_copies_exact_and_nearest_translations(features):
    hypotheses = retrieval.retrieve(TRAIN_DE, TRAIN_EN, [
        "Speichert das aktuelle Dokument.",  # in training: its translation exactly
        "Fügt eine neue Tabelle ins Dokument ein.",  # closest: the new-table sentence
        "Löscht die Zellen.",
        "xyz",  # nothing shared
    ], features)
    assert hypotheses[:3] == ["Saves the current document.", "Inserts a new table.", "Deletes the selected cells."]
    assert hypotheses[3] == ""


def test_retrieval_command_line_prints_bleu(tmp_path, capsys):
    files = {"train.de": TRAIN_DE, "train.en": TRAIN_EN, "test.de": TRAIN_DE[:2], "test.en": TRAIN_EN[:2]}
    for name, lines in files.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert retrieval.main(["--train-src", str(tmp_path / "train.de"), "--train-tgt", str(tmp_path / "train.en"),
                           "--test-src", str(tmp_path / "test.de"), "--test-ref", str(tmp_path / "test.en"),
                           "--output", str(tmp_path / "hyp.en")]) == 0
    assert json.loads(capsys.readouterr().out) == {"bleu": 100.0, "sentences": 2}
    assert (tmp_path / "hyp.en").read_text(encoding="utf-8").splitlines() == TRAIN_EN[:2]


def test_retrieval_rejects_unaligned_training_files():
    with pytest.raises(UsageError, match="--train-src has 4 lines but --train-tgt 3"):
        retrieval.retrieve(TRAIN_DE, TRAIN_EN[:3], ["Löscht."])
