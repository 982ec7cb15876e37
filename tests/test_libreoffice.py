"""LibreOffice's German UI catalogues: the .mo reader (on catalogues written here), the cleaning
of accelerators, placeholders and markup, the filters, the leak-free split and the command line."""

import json
import struct
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import pytest

from var_attn_plugin.data import libreoffice
from var_attn_plugin.data.ding import group_key
from var_attn_plugin.data.libreoffice import (
    UsageError,
    clean,
    extract_pairs,
    keep_pair,
    read_catalogue,
)

MO_MAGIC = 0x950412DE
HEADER = "Content-Type: text/plain; charset=UTF-8\nLanguage: de\n"

Key = Union[str, Tuple[str, str]]  # msgid, or (msgctxt, msgid)


def write_mo(path: Path, messages: Dict[Key, Union[str, Sequence[str]]]) -> Path:
    """A GNU .mo catalogue (little-endian, revision 0, no hash table) with the UTF-8 header.

    A key ``(context, msgid)`` is stored as ``context EOT msgid``; a value that is a list of
    strings is a plural message (its msgid is then ``singular NUL plural``)."""
    entries = {"": HEADER}
    for key, value in messages.items():
        msgid = key if isinstance(key, str) else f"{key[0]}\x04{key[1]}"
        if not isinstance(value, str):
            msgid, value = f"{msgid}\x00{msgid}s", "\x00".join(value)
        entries[msgid] = value
    keys = sorted(entries)
    ids = [k.encode("utf-8") for k in keys]
    strs = [entries[k].encode("utf-8") for k in keys]
    n = len(keys)
    originals_at, translations_at = 28, 28 + 8 * n
    data_at = translations_at + 8 * n
    table_o, table_t, blob = [], [], b""
    for text, table in [(s, table_o) for s in ids] + [(s, table_t) for s in strs]:
        table.append((len(text), data_at + len(blob)))
        blob += text + b"\x00"
    out = struct.pack("<7I", MO_MAGIC, 0, n, originals_at, translations_at, 0, data_at)
    for length, offset in table_o + table_t:
        out += struct.pack("<2I", length, offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + blob)
    return path


# (English msgid, German msgstr) with the formats' quirks, and what cleaning keeps
SAMPLE = {
    ("menu|file", "~Open the selected file"): "Ausgewählte Datei ~öffnen",
    "Save the &document now": "&Dokument jetzt speichern",
    ("dialog|name", "Fo_rm a _new sheet"): "Eine _neue Tabelle bilden",
    "%PRODUCTNAME could not open %1 files": "%PRODUCTNAME konnte %1 Dateien nicht öffnen",
    "<ahelp hid=\".\">Inserts a new column.</ahelp>": "<ahelp hid=\".\">Fügt eine neue Spalte ein.</ahelp>",
    "The file $(ARG1) was not found.": "Die Datei $(ARG1) wurde nicht gefunden.",
    "Drag & drop the cells here": "Ziehen & Ablegen der Zellen hier",
    "Line one\nand line two here": "Zeile eins\nund Zeile zwei hier",
    # dropped: fewer than 3 words on a side (after cleaning), untranslated, empty translation
    "Open File": "Datei öffnen",
    "%1 of %2 items": "%1 von %2",
    "Open Source Office Suite": "Open Source Office Suite",
    "Not translated yet, sorry": "",
    # a plural message: the singular form is kept
    "One file was deleted": ["Eine Datei wurde gelöscht", "%1 Dateien wurden gelöscht"],
}
EXPECTED = [
    ("Ausgewählte Datei öffnen", "Open the selected file"),
    ("Dokument jetzt speichern", "Save the document now"),
    ("Eine neue Tabelle bilden", "Form a new sheet"),
    ("LibreOffice konnte Dateien nicht öffnen", "LibreOffice could not open files"),
    ("Fügt eine neue Spalte ein.", "Inserts a new column."),
    ("Die Datei wurde nicht gefunden.", "The file was not found."),
    ("Ziehen & Ablegen der Zellen hier", "Drag & drop the cells here"),
    ("Zeile eins und Zeile zwei hier", "Line one and line two here"),
    ("Eine Datei wurde gelöscht", "One file was deleted"),
]


@pytest.mark.parametrize("raw, cleaned", [
    ("~File", "File"),
    ("&Save as", "Save as"),
    ("Drag & Drop", "Drag & Drop"),
    ("Li_nientyp:", "Linientyp:"),
    ("file_name", "filename"),
    ("%PRODUCTNAME Writer", "LibreOffice Writer"),
    ("Page %1 of %2", "Page of"),
    ("%s items, %d left", "items, left"),
    ("for %SAVE IN SELECTION% now", "for now"),
    ("$(ARG1) is $name$ and $1$ or $ERR", "is and or"),
    ("Press %MOD1+C", "Press +C"),
    ("Item {0} here", "Item here"),
    ('<ahelp hid="x/y">Inserts</ahelp> a <font color="red">row</font>', "Inserts a row"),
    ("a <> b", "a <> b"),  # not a tag
    ("two\nlines\tand  spaces ", "two lines and spaces"),
    ("5% more", "5% more"),
])
def test_clean(raw, cleaned):
    assert clean(raw) == cleaned


@pytest.mark.parametrize("german, english, kept", [
    ("Eine Datei öffnen", "Open a file", True),
    ("Datei öffnen", "Open a file", False),  # 2 words
    ("Open Source Office", "open source office", False),  # untranslated (case aside)
    (" ".join(["Wort"] * 51), " ".join(["word"] * 51), False),  # longer than MAX_WORDS
])
def test_keep_pair(german, english, kept):
    assert keep_pair(german, english) is kept


def test_catalogues_give_the_expected_pairs_and_counts(tmp_path):
    path = write_mo(tmp_path / "sample.mo", SAMPLE)
    messages = read_catalogue(path)
    assert ("Open File", "Datei öffnen") in messages  # the context is not part of the msgid
    assert ("~Open the selected file", "Ausgewählte Datei ~öffnen") in messages
    assert all(msgid for msgid, _ in messages)  # no header entry
    pairs, stats = extract_pairs([path])
    assert sorted(pairs) == sorted(EXPECTED)
    assert stats.catalogues == 1 and stats.messages == len(SAMPLE) - 1  # the empty translation
    assert stats.too_short_or_long == 2 and stats.untranslated == 1 and stats.pairs == len(EXPECTED)


def test_unreadable_catalogues_name_the_file(tmp_path):
    bad = tmp_path / "bad.mo"
    bad.write_bytes(b"not a catalogue at all")
    with pytest.raises(UsageError, match="bad.mo"):
        read_catalogue(bad)
    with pytest.raises(UsageError, match="no .mo catalogue"):
        libreoffice.find_catalogues(tmp_path / "empty")


def numbered_catalogue(n: int) -> Dict[Key, str]:
    return {f"This is message number {i}": f"Das ist Meldung Nummer {i}" for i in range(n)}


def test_command_line_writes_aligned_leak_free_splits(tmp_path):
    mo_dir = tmp_path / "resource" / "de" / "LC_MESSAGES"
    write_mo(mo_dir / "a.mo", SAMPLE)
    # the same German sentence twice with two English ones: the pair stays in one split
    write_mo(mo_dir / "b.mo", {**numbered_catalogue(40), "This is message number one": "Das ist Meldung Nummer 1"})
    out = tmp_path / "out"
    libreoffice.main(["--mo-dir", str(tmp_path / "resource"), "-o", str(out), "--valid-size", "5",
                      "--test-size", "7", "--seed", "3"])
    keys = {}
    for split in ("train", "valid", "test"):
        de = (out / f"{split}.de").read_text(encoding="utf-8").splitlines()
        en = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
        assert len(de) == len(en)
        keys[split] = {group_key(g) for g in de}
        for pair in zip(de, en):
            assert pair in EXPECTED or pair[0].replace("Das ist Meldung Nummer", "This is message number") \
                in (pair[1], "This is message number 1")
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"] and not keys["valid"] & keys["test"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["catalogues"] == 2 and stats["distinct_pairs"] == len(EXPECTED) + 41
    assert stats["valid_pairs"] <= 5 and stats["test_pairs"] <= 7
    assert stats["train_pairs"] + stats["valid_pairs"] + stats["test_pairs"] == stats["distinct_pairs"]
    # deterministic, and independent of the file names' order
    again = tmp_path / "again"
    libreoffice.main(["--mo-dir", str(tmp_path / "resource"), "-o", str(again), "--valid-size", "5",
                      "--test-size", "7", "--seed", "3"])
    assert (again / "test.de").read_text() == (out / "test.de").read_text()


def test_fetch_reports_the_fix_when_apt_cannot_help(tmp_path, monkeypatch):
    monkeypatch.setattr(libreoffice, "_run", lambda command, cwd: False)
    with pytest.raises(UsageError, match="--mo-dir"):
        libreoffice.fetch_catalogues(tmp_path / "download")


def test_fetch_keeps_the_catalogues_once_found(tmp_path, monkeypatch):
    kept = tmp_path / "download" / libreoffice.FETCHED_DIR
    write_mo(kept / "x.mo", SAMPLE)
    monkeypatch.setattr(libreoffice, "_run", lambda command, cwd: pytest.fail("fetched again"))
    assert libreoffice.fetch_catalogues(tmp_path / "download") == kept.resolve()
