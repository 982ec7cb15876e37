"""The recipes: IWSLT14 preparation on a tiny sample in the real file formats, the IWSLT14
scripts end to end, sentencepiece round trips, and the demo's tiny run on a synthetic
dictionary (no apt, no download)."""

import json
import os
import random
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import BIN_DIR, TINY_FLAGS

from var_attn_plugin.data import iwslt14, subwords
from var_attn_plugin.data.iwslt14 import (
    TEST_SETS,
    clean_corpus,
    clean_train_tags,
    filter_pieces,
    split_valid,
    tokenize,
    xml_segments,
)
from varattn_experiments import demo as demo_runs
from varattn_experiments.manifest import code_version

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def run_script(script: Path, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run a recipe script with this environment's console scripts first on PATH."""
    full_env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
                    PYTHONWARNINGS="ignore", **(env or {}))
    proc = subprocess.run(["bash", str(script), *map(str, args)], env=full_env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{script.name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def read(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


# ----------------------------------------------------------------------------- IWSLT14 steps


def test_train_tags_drop_metadata_lines_and_keep_titles():
    lines = ["<url>http://www.ted.com/talks/x.html</url>", "<keywords>talks, science</keywords>",
             "<speaker>Ann</speaker>", "<talkid>7</talkid>", "<title>Ann: Deep sea</title>",
             "<description>TED Talk Subtitles</description>", "Hello there."]
    assert clean_train_tags(lines) == ["<speaker>Ann</speaker>", "Ann: Deep sea", "TED Talk Subtitles", "Hello there."]


def test_xml_segments():
    lines = ['<doc docid="1">', "<talkid>1</talkid>", '<seg id="1"> It’s fine. </seg>', '<seg id="12">Two  words</seg>',
             "</doc>"]
    assert xml_segments(lines) == ["It's fine.", "Two  words"]


def test_moses_tokenisation_escapes_like_tokenizer_perl():
    assert tokenize(['I don\'t know, "he" said & left.'], "en") == \
        ["I don &apos;t know , &quot; he &quot; said &amp; left ."]
    # outside English (and French, Italian) tokenizer.perl splits apostrophes on both sides
    assert tokenize(["Das ist's, oder?"], "de") == ["Das ist &apos; s , oder ?"]


def test_clean_corpus_follows_clean_corpus_n():
    source = ["a b c", "", "a  b", "a b c d", "a " * 176, "x|y z"]
    target = ["A B", "A", "A B", "A", "A " * 176, "X Y"]
    # kept: ratio 1.5 exactly; spaces normalised; "|" removed. Dropped: empty side,
    # ratio 4, more than 175 words.
    assert clean_corpus(source, target) == (["a b c", "a b", "xy z"], ["A B", "A B", "X Y"])


def test_valid_is_every_23rd_line():
    lines = [str(n) for n in range(1, 50)]
    train, valid = split_valid(lines)
    assert valid == ["23", "46"]
    assert len(train) == 47 and "23" not in train and train[:2] == ["1", "2"]


def test_filter_pieces():
    assert filter_pieces(["a b", "a", "a b c"], ["A", "A B C", "A"], max_pieces=2) == (["a b"], ["A"])


def write_iwslt_sample(orig: Path, seed: int = 0) -> dict:
    """A tiny IWSLT14 de-en folder in the real formats: ``train.tags`` files with TED
    metadata lines and the five XML test sets. Returns what preparation must keep."""
    rng = random.Random(seed)
    words_de = ["haus", "baum", "Katze", "läuft", "schnell", "heute", "nicht", "Wasser", "gut", "sehr"]
    words_en = ["house", "tree", "cat", "runs", "fast", "today", "not", "water", "good", "very"]
    text = []  # (German, English, kept by clean-corpus-n)
    for i in range(52):
        n = rng.randint(2, 8)
        idx = [rng.randrange(len(words_de)) for _ in range(n)]
        text.append((" ".join(words_de[k] for k in idx) + " .", " ".join(words_en[k] for k in idx) + " .", True))
    text[3] = ("Er sagt: „Ich weiß es nicht.“", "He says, \"I don't know.\"", True)
    text[10] = ("Ja .", "Yes , that is absolutely right , friends .", False)  # ratio > 1.5
    text[17] = (" ".join(["Baum"] * 180), " ".join(["tree"] * 180), False)  # > 175 words
    text[30] = (" ".join(["Baumhaus"] * 140), " ".join(["treehouse"] * 140), True)  # > 125 pieces
    header = ["<url>http://www.ted.com/talks/{0}.html</url>", "<keywords>talks, nature</keywords>",
              "<speaker>Ann Example</speaker>", "<talkid>{0}</talkid>", "<title>Ann Example: Trees {0}</title>",
              "<description>TED Talk Subtitles and Transcript: trees</description>"]
    # what survives of the header: the speaker line, and the title and description without tags
    header_kept = ["<speaker>Ann Example</speaker>", "Ann Example: Trees {0}",
                   "TED Talk Subtitles and Transcript: trees"]
    lines = {"de": [], "en": []}
    kept_lines = []  # (German, English) pairs that preparation keeps, in file order
    for talk, chunk in enumerate((text[:26], text[26:])):
        for lang in ("de", "en"):
            lines[lang] += [h.format(talk) for h in header]
        kept_lines += [(h.format(talk), h.format(talk)) for h in header_kept]
        for de, en, kept in chunk:
            lines["de"].append(de)
            lines["en"].append(en)
            if kept:
                kept_lines.append((de, en))
    folder = orig / "de-en"
    folder.mkdir(parents=True)
    for lang in ("de", "en"):
        (folder / f"train.tags.de-en.{lang}").write_text("\n".join(lines[lang]) + "\n", encoding="utf-8")
    test = {"de": [], "en": []}
    for k, name in enumerate(TEST_SETS):
        for lang, words in (("de", words_de), ("en", words_en)):
            segments = [f"{name.split('.')[-1]} {words[k]} {words[k + 1]} .", f"It’s {words[k + 2]} ."]
            test[lang] += [s.replace("’", "'") for s in segments]
            xml = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{name}">',
                   f'<doc docid="{k}" genre="lectures">', f"<url>http://www.ted.com/talks/{k}.html</url>",
                   f"<talkid>{k}</talkid>", f"<title>Talk {k}</title>"]
            xml += [f'<seg id="{i + 1}"> {s} </seg>' for i, s in enumerate(segments)]
            xml += ["</doc>", "</srcset>", "</mteval>"]
            (folder / f"{name}.de-en.{lang}.xml").write_text("\n".join(xml) + "\n", encoding="utf-8")
    return {"kept": kept_lines, "test": test}


def decode_pieces(line: str) -> str:
    return line.replace(" ", "").replace("▁", " ").strip()


def test_prepare_iwslt14_on_a_sample(tmp_path):
    expected = write_iwslt_sample(tmp_path / "orig")
    out = tmp_path / "prep"
    counts = iwslt14.prepare(tmp_path / "orig" / "de-en", out, vocab_size=120, max_pieces=125,
                             soft_vocab_limit=True)
    kept = expected["kept"]
    # headers: 6 metadata lines dropped or stripped per talk; clean-corpus-n drops 2 pairs
    assert counts["train_tags"] == 52 + 2 * 3 and counts["train_clean"] == len(kept) == 56
    tok_en = read(out / "tok" / "train.en") + read(out / "tok" / "valid.en")
    assert not any("<url>" in line or "<title>" in line or "<keywords>" in line for line in tok_en)
    # valid = cleaned lines 23 and 46, tokenised and lowercased
    valid_en = read(out / "tok" / "valid.en")
    assert valid_en == [tokenize([kept[22][1]], "en")[0].lower(), tokenize([kept[45][1]], "en")[0].lower()]
    assert "he says , &quot; i don &apos;t know . &quot;" in read(out / "tok" / "train.en")
    # the 140-word pair survives cleaning but not the 125-piece filter
    assert counts["train"] == len(kept) - 2 - 1 and counts["valid"] == 2
    assert not any(len(line.split()) > 125 for line in read(out / "train.de") + read(out / "train.en"))
    # test: five sets in order, ’ -> ', untokenised in raw/, whole in the piece files
    assert read(out / "raw" / "test.de") == expected["test"]["de"]
    assert read(out / "raw" / "test.en") == expected["test"]["en"]
    raw_test = read(out / "raw" / "test.en")
    assert raw_test[0].startswith("dev2010") and raw_test[8].startswith("tst2012")
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            pieces, tok = read(out / f"{split}.{lang}"), read(out / "tok" / f"{split}.{lang}")
            if split == "test":
                assert [decode_pieces(p) for p in pieces] == tok  # pieces undo exactly
            assert all(line == line.lower() for line in tok)
    assert json.loads((out / "stats.json").read_text()) == counts


def test_prepare_iwslt14_names_missing_files(tmp_path):
    with pytest.raises(iwslt14.UsageError, match="unpacked de-en.tgz"):
        iwslt14.prepare(tmp_path / "nothing", tmp_path / "prep")


def test_sentencepiece_round_trip(tmp_path):
    text = ["Das Wort „côte“ hat keinen Akut.", "Er hatte eine Nikotinfahne …", "I’ve made one or two modifications."]
    (tmp_path / "train.txt").write_text("\n".join(text * 20) + "\n", encoding="utf-8")
    model = subwords.train([tmp_path / "train.txt"], tmp_path / "spm", vocab_size=60, hard_vocab_limit=False)
    (tmp_path / "test.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    assert subwords.encode(model, tmp_path / "test.txt", tmp_path / "test.pieces") == 3
    pieces = read(tmp_path / "test.pieces")
    assert [decode_pieces(p) for p in pieces] == text  # identity normalisation: "…" stays
    assert all(len(p.split()) > 1 for p in pieces)


# ----------------------------------------------------------------------------- scripts end to end


TINY_TRANSFORMER_FLAGS = ["--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-layers", "1",
                          "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", "--decoder-layers", "1",
                          "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
                          "--decoder-output-dim", "24", "--inference-hidden-size", "16"]


@pytest.mark.slow
def test_iwslt14_scripts_end_to_end(tmp_path):
    write_iwslt_sample(tmp_path / "orig")
    tgz = tmp_path / "de-en.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(tmp_path / "orig" / "de-en", arcname="de-en")
    work = tmp_path / "iwslt14"
    env = {"IWSLT14_TGZ": str(tgz), "IWSLT14_WORK": str(work), "IWSLT14_VOCAB_SIZE": "150", "WORKERS": "1",
           "DATA": str(work / "data-bin"), "SAVE_ROOT": str(work / "checkpoints"), "EVAL_ARGS": "--cpu"}
    run_script(EXAMPLES / "iwslt14" / "prepare.sh", env=env)
    assert (work / "data-bin" / "test.de-en.en.bin").is_file()
    train = run_script(EXAMPLES / "iwslt14" / "train-var-enum.sh", "--cpu", "--max-epoch", "2", *TINY_FLAGS,
                       env={**env, "BATCH": "8"})
    # the recipe's flags reached fairseq-train: the arch and the paper's optimiser settings
    log = (work / "checkpoints" / "var-enum" / "train.log").read_text()
    assert "varattn_lstm_iwslt_de_en" in log and "'seed': 3435" in log and "'clip_norm': 5.0" in log
    assert "'exclude_source_eos': True" in log  # the paper's candidates: no source EOS
    assert "reduce_lr_on_plateau" in log and "bound" in train.stdout
    evaluation = run_script(EXAMPLES / "iwslt14" / "evaluate.sh", "var-enum", env=env).stdout
    assert "tokenised, lowercased BLEU" in evaluation and "detokenised sacreBLEU" in evaluation
    out = work / "checkpoints" / "var-enum" / "eval-auto"
    ppl = float(re.search(r"\| ppl ([0-9.]+)", (out / "validate.log").read_text()).group(1))
    assert 1 < ppl < 10 * 150  # finite, an exact perplexity over at most ~150 pieces
    hyps = read(out / "hyp.tok.en")
    assert len(hyps) == 2 * len(TEST_SETS)
    generate_log = (out / "generate.log").read_text()
    for setting in ("'beam': 10", "'gnmt_lenpen': 1.0", "'eos_penalty': 3.0"):
        assert setting in generate_log
    for name in ("bleu.tok.json", "bleu.detok.json"):
        report = json.loads((out / name).read_text())
        assert report["name"] == "BLEU" and 0 <= report["score"] <= 100
    assert "tok:none" in json.loads((out / "bleu.tok.json").read_text())["signature"]
    assert "case:lc" in json.loads((out / "bleu.detok.json").read_text())["signature"]
    assert len(read(out / "hyp.detok.en")) == len(hyps)

    # the Transformer rows: fairseq's IWSLT14 Transformer recipe
    run_script(EXAMPLES / "iwslt14" / "train-transformer.sh", "var-enum", "--cpu", "--max-epoch", "1",
               *TINY_TRANSFORMER_FLAGS, env={**env, "TOKENS": "400"})
    log = (work / "checkpoints" / "transformer-none-var-enum" / "train.log").read_text()
    assert "varattn_transformer_iwslt_de_en" in log and "inverse_sqrt" in log and "'warmup_updates': 4000" in log
    assert "'exclude_source_eos': True" in log and "soft_cross_attention': none" in log
    # (evaluate.sh has nothing of its own for the Transformer: the checkpoint names its architecture)


# ----------------------------------------------------------------------------- the demo, tiny


@pytest.mark.slow
def test_demo_tiny_end_to_end_and_rerun(tiny_demo, tmp_path):
    demo, corpus, first = tiny_demo.dir, tiny_demo.dir / "corpus", tiny_demo.stdout
    stats = json.loads((corpus / "data" / "stats.json").read_text())
    assert stats["pairs"] == tiny_demo.pairs and stats["malformed"] == 0
    assert [stats[f"{s}_pairs"] for s in ("valid", "test")] == [30, 30] and stats["train_pairs"] == 300
    test_de = read(corpus / "data" / "test.de")
    assert not set(test_de) & set(read(corpus / "data" / "train.de"))
    # exact perplexity of the test set: better than a uniform guess over the target pieces
    vocab = len(read(corpus / "data-bin" / "dict.en.txt")) + 4
    ppl_text = re.search(r"\| ppl ([0-9.]+)", (demo / "eval" / "validate.log").read_text()).group(1)
    assert 1 < float(ppl_text) < vocab
    for system in ("latent", "soft", "retrieval"):
        assert len(read(demo / "eval" / f"hyp-{system}.txt")) == len(test_de)
    assert (demo / "eval" / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first.count("OUT: ") == 5 and "DE : " in first
    summary = (demo / "summary.txt").read_text()
    assert f"test perplexity (exact, per piece): {float(ppl_text):.2f}\n" in summary
    bleu = json.loads((demo / "eval" / "bleu-latent.json").read_text())["score"]
    retrieval = json.loads((demo / "eval" / "bleu-retrieval.json").read_text())["bleu"]
    assert f"test sacreBLEU (detokenised): var-enum {bleu:.2f} | soft warm start " in summary
    assert f"retrieval baseline {retrieval:.2f}" in summary and "attention.png" in summary
    assert re.search(r"torch threads \d and \d", summary) and f"code {code_version()}" in summary
    # the examples: by a stated rule, the same in the summary as in choice.json
    choice = json.loads((demo / "eval" / "choice.json").read_text())
    assert [f"DE : {test_de[i]}" in summary for i in choice["examples"]] == [True] * 5
    # its record: what the report reads, no checkpoint; the report's row has the run's scores
    demo_runs.archive(demo, tmp_path / "record" / "tiny")
    assert not list((tmp_path / "record").rglob("*.pt")) and (tmp_path / "record" / "tiny" / "summary.txt").is_file()
    page = demo_runs.report(tmp_path / "record")
    assert f"| {float(ppl_text):.2f} | {bleu:.2f} | " in page and f"| {retrieval:.2f} |" in page
    # the same command on a copy in another folder reuses every step
    again = shutil.copytree(demo, tmp_path / "demo")
    manifest = (again / "manifest.json").read_text()
    second = run_script(EXAMPLES / "demo.sh", env={**tiny_demo.env, "DEMO_DIR": str(again)}).stdout
    assert (again / "manifest.json").read_text() == manifest and "train" not in second.split("data:")[0]
    assert second.count("OUT: ") == 5
