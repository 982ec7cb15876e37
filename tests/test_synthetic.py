"""The synthetic alignment tasks (var_attn_plugin.data.synthetic) and the reference links of the
comparison (varattn_experiments.links: the diagonal, grow-diag-final-and)."""

import pytest

from var_attn_plugin.data import synthetic
from var_attn_plugin.data.synthetic import TASKS, make_lexicon, translate, write_task
from varattn_experiments import links


def test_synthetic_tasks_have_the_advertised_alignments():
    lexicon = make_lexicon(seed=0)
    m, h = lexicon.modifiers[0], lexicon.heads[0]
    fertile = next(w for w in lexicon.heads if len(lexicon.translation[w]) == 2)
    plain = next(w for w in lexicon.heads if len(lexicon.translation[w]) == 1)
    source = [h, m, plain, fertile]
    # monotone: word i -> word i
    target, gold = translate(source, "monotone", lexicon)
    assert target == [lexicon.translation[w][0] for w in source] and gold == {(i, i) for i in range(4)}
    # local: the modifier before a head swaps with it
    target, gold = translate(source, "local", lexicon)
    assert target[1:3] == [lexicon.translation[plain][0], lexicon.translation[m][0]]
    assert gold == {(0, 0), (2, 1), (1, 2), (3, 3)}
    # fertility: the fertile head gives two target words, both linked to it
    target, gold = translate(source, "fertility", lexicon)
    assert target[3:] == lexicon.translation[fertile] and {(3, 3), (3, 4)} <= gold and len(gold) == 5
    # null: an unlinked article before every head; particles link to nothing
    source = [lexicon.particles[0], h, m, plain]
    target, gold = translate(source, "null", lexicon)
    assert target == ["the", lexicon.translation[h][0], "the", lexicon.translation[plain][0],
                      lexicon.translation[m][0]]
    assert gold == {(1, 1), (3, 3), (2, 4)}
    with pytest.raises(ValueError, match="unknown task"):
        translate(source, "swap", lexicon)


@pytest.mark.parametrize("task", TASKS)
def test_synthetic_files_are_parallel_and_deterministic(tmp_path, task):
    sizes = (("train", 50), ("valid", 5), ("test", 7))
    write_task(tmp_path / "a", task, sizes, seed=3)
    synthetic.main(["--task", task, "-o", str(tmp_path / "b"), "--train-size", "50", "--valid-size", "5",
                    "--test-size", "7", "--seed", "3"])
    for split, n in sizes:
        files = {s: (tmp_path / "a" / f"{split}.{s}").read_text().splitlines() for s in ("de", "en", "align")}
        assert all(len(lines) == n for lines in files.values())
        for de, en, gold in zip(files["de"], files["en"], files["align"]):
            for link in gold.split():
                i, j = map(int, link.split("-"))
                assert i < len(de.split()) and j < len(en.split())
        for name in (f"{split}.de", f"{split}.en", f"{split}.align"):
            assert (tmp_path / "b" / name).read_text() == (tmp_path / "a" / name).read_text()


# ----------------------------------------------------------------------------- reference links


def test_diagonal_links_every_target_word_inside_the_source():
    assert links.diagonal(4, 4) == {(0, 0), (1, 1), (2, 2), (3, 3)}
    assert links.diagonal(2, 4) == {(0, 0), (1, 1), (1, 2), (1, 3)}  # round(j * 2 / 4), half up, clamped
    assert links.diagonal(5, 2) == {(0, 0), (3, 1)}
    assert links.diagonal(0, 3) == set()


def test_grow_diag_final_and():
    forward = {(0, 0), (1, 1), (3, 3)}
    reverse = {(0, 0), (4, 3)}
    # intersection {0-0}; grow-diag adds 1-1 (a diagonal neighbour in the union, both words
    # unaligned); final-and adds 3-3 (both unaligned) but not 4-3 (target 3 is aligned by then)
    assert links.grow_diag_final_and(forward, reverse) == {(0, 0), (1, 1), (3, 3)}
    # growing follows the union through neighbours of what was added
    assert links.grow_diag_final_and({(0, 0), (1, 1), (2, 2)}, {(0, 0)}) == {(0, 0), (1, 1), (2, 2)}
    assert links.grow_diag_final_and(set(), set()) == set()


def test_links_command_line(tmp_path, capsys):
    (tmp_path / "s").write_text("a b c\nd\n")
    (tmp_path / "t").write_text("x y\ny z w\n")
    links.main(["diagonal", str(tmp_path / "s"), str(tmp_path / "t")])
    assert capsys.readouterr().out == "0-0 2-1\n0-0 0-1 0-2\n"
