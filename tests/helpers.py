"""Shared test helpers: tiny models, synthetic corpora, the real fairseq command lines.

Sizes are tiny and pairwise distinct (so a swapped axis fails loudly).
"""

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import forked
import torch
from fairseq.data import Dictionary

import var_attn_plugin  # noqa: F401  (registers the plugin)
from var_attn_plugin import presets
from var_attn_plugin.loading import load_for_inference
from var_attn_plugin.lstm.model import VarAttnLSTMConfig, VarAttnLSTMModel
from var_attn_plugin.model import VarAttnModel
from var_attn_plugin.transformer.model import VarAttnTransformerConfig, VarAttnTransformerModel

PLUGIN_DIR = Path(var_attn_plugin.__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent

TINY_SIZES = dict(
    encoder_embed_dim=6, encoder_hidden_size=5, encoder_layers=2,
    decoder_embed_dim=7, decoder_hidden_size=9, decoder_layers=2,
    attention_dim=4, decoder_output_dim=8, inference_hidden_size=3, inference_layers=2,
)
TINY_TRANSFORMER_SIZES = dict(
    encoder_embed_dim=8, encoder_ffn_embed_dim=10, encoder_layers=2, encoder_attention_heads=2,
    decoder_embed_dim=6, decoder_ffn_embed_dim=12, decoder_layers=2, decoder_attention_heads=3,
    decoder_output_dim=7, inference_hidden_size=3, inference_layers=2,
)
# the architectures every shared oracle runs for: (config, model class, tiny sizes)
ARCHITECTURES = {
    "lstm": (VarAttnLSTMConfig, VarAttnLSTMModel, TINY_SIZES),
    "transformer": (VarAttnTransformerConfig, VarAttnTransformerModel, TINY_TRANSFORMER_SIZES),
}
ARCHS = list(ARCHITECTURES)

# tiny sizes on the command line (fairseq-train), per architecture: the presets' "test" sizes
TINY_FLAGS = presets.flags(presets.LSTM_PRESETS["test"])
TINY_TRANSFORMER_FLAGS = presets.flags(presets.TRANSFORMER_PRESETS["test"])
# the --arch and tiny command-line sizes of each architecture of ARCHITECTURES
ARCH_FLAGS = {
    "lstm": ("varattn_lstm", TINY_FLAGS),
    "transformer": ("varattn_transformer", TINY_TRANSFORMER_FLAGS),
}
assert set(ARCH_FLAGS) == set(ARCHITECTURES)


def make_dictionary(num_words: int) -> Dictionary:
    d = Dictionary()
    for i in range(num_words):
        d.add_symbol(f"w{i}")
    d.finalize(padding_factor=1)
    return d


def build_model(mode: str, src_words: int = 11, tgt_words: int = 13, seed: int = 0, arch: str = "lstm",
                **overrides) -> VarAttnModel:
    """A tiny model of architecture ``arch`` (a key of ARCHITECTURES) built the way fairseq
    builds it (``build_model`` with a task)."""
    torch.manual_seed(seed)
    config, model_class, sizes = ARCHITECTURES[arch]
    cfg = config(attention_mode=mode, dropout=0.0, **{**sizes, **overrides})
    task = SimpleNamespace(source_dictionary=make_dictionary(src_words),
                           target_dictionary=make_dictionary(tgt_words))
    return model_class.build_model(cfg, task)


def random_batch(model: VarAttnModel, lengths_src: List[int], lengths_tgt: List[int],
                 seed: int = 0, left_pad_source: bool = True) -> Dict:
    """A fairseq-style batch: left-padded sources, right-padded targets ending in EOS."""
    g = torch.Generator().manual_seed(seed)
    src_dict, tgt_dict = model.encoder.dictionary, model.decoder.dictionary
    B = len(lengths_src)
    S, T = max(lengths_src), max(lengths_tgt)
    src = torch.full((B, S), src_dict.pad())
    tgt = torch.full((B, T), tgt_dict.pad())
    prev = torch.full((B, T), tgt_dict.pad())
    for b, (ls, lt) in enumerate(zip(lengths_src, lengths_tgt)):
        words = torch.randint(src_dict.nspecial, len(src_dict), (ls - 1,), generator=g)
        row = torch.cat([words, torch.tensor([src_dict.eos()])])
        if left_pad_source:
            src[b, S - ls:] = row
        else:
            src[b, :ls] = row
        words = torch.randint(tgt_dict.nspecial, len(tgt_dict), (lt - 1,), generator=g)
        tgt[b, :lt] = torch.cat([words, torch.tensor([tgt_dict.eos()])])
        prev[b, :lt] = torch.cat([torch.tensor([tgt_dict.eos()]), words])
    return {
        "id": torch.arange(B),
        "nsentences": B,
        "ntokens": int(sum(lengths_tgt)),
        "net_input": {"src_tokens": src, "src_lengths": torch.tensor(lengths_src),
                      "prev_output_tokens": prev},
        "target": tgt,
    }


# ------------------------------------------------------------------ synthetic corpora


def var_relaxed_concentrations(model: VarAttnModel, batch):
    """The Dirichlet concentrations of the prior and of q of a var-relaxed ``model`` on ``batch``,
    recomputed from its scores (no gradient), and the decoder's states."""
    net, target = batch["net_input"], batch["target"]
    with torch.no_grad():
        encoder_out = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
        states = model.decoder.extract_features(net["prev_output_tokens"], encoder_out)
        pad = model.decoder.dictionary.pad()
        q_scores = model.inference_network(encoder_out["src_embeddings"][0], states.src_padding_mask,
                                           model.decoder.embed_targets(target), target.eq(pad))
        mask = states.src_padding_mask.unsqueeze(1)
        estimator = model.decoder.estimator
        return estimator.concentration(states.prior_scores, mask), estimator.concentration(q_scores, mask), states


def permutation_pair(words: List[str]) -> List[str]:
    """The synthetic task with a known alignment: reverse the sentence and map each word
    w_k to W_k. Target position i is aligned to source position n-1-i."""
    return [w.upper() for w in reversed(words)]


def write_synthetic_corpus(directory: Path, sizes=(("train", 600), ("valid", 40), ("test", 20)),
                           vocab: int = 20, min_len: int = 2, max_len: int = 8, seed: int = 1) -> Path:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        with open(directory / f"{split}.src", "w") as fs, open(directory / f"{split}.tgt", "w") as ft:
            for _ in range(n):
                words = [f"w{rng.randrange(vocab)}" for _ in range(rng.randint(min_len, max_len))]
                fs.write(" ".join(words) + "\n")
                ft.write(" ".join(permutation_pair(words)) + "\n")
    return directory


# a Ding-format dictionary of a tiny German grammar (the demo's and the comparison's tiny runs)
NOUNS = [("Hund", "m", "dog"), ("Katze", "f", "cat"), ("Kind", "n", "child"), ("Vogel", "m", "bird"),
         ("Frau", "f", "woman"), ("Mann", "m", "man"), ("Pferd", "n", "horse"), ("Maus", "f", "mouse")]
VERBS = [("sieht", "sees"), ("hört", "hears"), ("findet", "finds"), ("ruft", "calls"), ("malt", "paints"),
         ("kennt", "knows")]
ARTICLES = {"m": ("der", "den"), "f": ("die", "die"), "n": ("das", "das")}  # nominative, accusative


def write_synthetic_dictionary(path: Path, seed: int = 0) -> int:
    """A Ding-format file whose sub-entries hold sentences of a tiny German grammar
    ("Der Hund sieht die Katze." :: "The dog sees the cat.")."""
    lines = ["# Version :: synthetic test dictionary"]
    for (s, sg, se), (v, ve), (o, og, oe) in itertools.product(NOUNS, VERBS, NOUNS):
        if s != o:
            german = f"{ARTICLES[sg][0].capitalize()} {s} {v} {ARTICLES[og][1]} {o}."
            lines.append(f"{s} {{{sg}}} | {german} :: {se} | The {se} {ve} the {oe}.")
            # with "heute" first, the verb comes second: a reordering for the alignment
            german = f"Heute {v} {ARTICLES[sg][0]} {s} {ARTICLES[og][1]} {o}."
            lines.append(f"heute {{adv}} | {german} :: today | Today the {se} {ve} the {oe}.")
    random.Random(seed).shuffle(lines[1:])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


def fairseq_cli(tool: str, *args, cwd: Optional[Path] = None, check: bool = True,
                input: Optional[str] = None, timeout: int = 600, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run a real console script (``fairseq-train`` …) of this environment, in a fork of a
    process that has imported torch and fairseq already (tests/forked.py), or with ``fresh``
    in a new process of its own (for what happens while modules load)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = forked.run(str(BIN_DIR / tool), list(args), env, cwd=cwd, input=input, timeout=timeout, fresh=fresh)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def fairseq_start(tool: str, *args, log: Path, env: Optional[Dict[str, str]] = None,
                  cwd: Optional[Path] = None) -> forked.Started:
    """A console script left running (like ``subprocess.Popen``: ``pid``, ``poll``, ``wait``,
    ``send_signal``, ``kill``), forked as ``fairseq_cli``'s, stdout and stderr to ``log``;
    ``env``: variables to add (none that Python or torch read at start-up)."""
    full = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", **(env or {}))
    return forked.start(str(BIN_DIR / tool), list(args), full, stdout=log, cwd=cwd)


def preprocess(raw: Path, dest: Path) -> Path:
    fairseq_cli("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
                "--trainpref", raw / "train", "--validpref", raw / "valid", "--testpref", raw / "test",
                "--destdir", dest, "--workers", "1")
    return dest


# ------------------------------------------------------------------ statistical checks

# A sample mean lies within Z_SCORE standard errors of its expectation with probability
# 1 - 5.7e-7 under the normal approximation, so a check over a few thousand coordinates
# fails by chance with probability below 1e-3; seeded tests are deterministic besides.
Z_SCORE = 5.0


def standard_errors(samples, expected, std=None):
    """Per-coordinate z-scores ``|mean - expected| / standard error`` of iid ``samples``.

    Args:
        samples: ``(N, ...)`` N independent draws of an estimator.
        expected: ``(...)`` its exact expectation.
        std: ``(...)`` the known standard deviation of one draw, or None to use the
            sample standard deviation.

    Returns:
        ``(...)`` z-scores. The standard error is floored at float64 rounding of the
        expectation, so a constant estimator (zero spread) passes when it equals
        ``expected`` up to rounding and fails otherwise.
    """
    n = samples.size(0)
    std = samples.std(dim=0) if std is None else std
    rounding = 1e-12 * (1.0 + expected.abs())
    se = torch.maximum(std / n ** 0.5, rounding)
    return (samples.mean(dim=0) - expected).abs() / se


def assert_mean_matches(samples, expected, std=None, what: str = "estimator"):
    """The sample mean of ``samples`` equals ``expected`` within Z_SCORE standard errors in
    every coordinate; returns the largest z-score (worth printing)."""
    z = standard_errors(samples, expected, std)
    worst = float(z.max())
    assert worst <= Z_SCORE, (
        f"{what}: mean differs from its expectation by {worst:.2f} standard errors "
        f"(coordinate {tuple(int(i) for i in torch.nonzero(z == z.max())[0])})")
    return worst


# ------------------------------------------------------------------ command-line runs and their logs


def train_args(data: Path, save_dir: Path, mode: str = "var-enum", *extra, arch: str = "lstm") -> List:
    """A tiny ``fairseq-train`` command line with JSON logs for architecture ``arch`` (a key of
    ARCH_FLAGS: its ``--arch`` and tiny sizes); flags in ``extra`` come last and so override
    the defaults here (argparse keeps the last value)."""
    arch_name, sizes = ARCH_FLAGS[arch]
    return [data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation", "--arch", arch_name,
            "--criterion", "varattn_elbo", "--attention-mode", mode, *sizes,
            "--optimizer", "adam", "--lr", "1e-2", "--max-tokens", "500", "--cpu", "--seed", "1",
            "--save-dir", save_dir, "--log-format", "json", "--no-epoch-checkpoints", *extra]


def log_records(text: str, logger: str) -> List[Dict[str, float]]:
    """The metrics of fairseq's ``--log-format json`` lines of one logger (``train_inner``,
    ``train``, ``valid``), in order, as floats (fairseq writes them as rounded strings)."""
    marker = f" | {logger} | "
    records = []
    for line in text.splitlines():
        _, found, body = line.partition(marker)
        if found and body.startswith("{"):
            records.append({key: float(value) for key, value in json.loads(body).items()})
    return records


def generation_records(text: str) -> Dict[int, Dict[str, object]]:
    """``fairseq-generate`` / ``-interactive`` output by sentence id: ``S``, ``T`` (text),
    ``H`` (score, text), ``P`` (per-token base-2 scores), ``A`` (list of (source, target)
    word links)."""
    records: Dict[int, Dict[str, object]] = {}
    for line in text.splitlines():
        head, _, rest = line.partition("\t")
        kind, dash, sentence_id = head.partition("-")
        if not dash or kind not in ("S", "T", "H", "P", "A") or not sentence_id.isdigit():
            continue
        record = records.setdefault(int(sentence_id), {})
        if kind in ("S", "T"):
            record[kind] = rest
        elif kind == "H":
            score, _, words = rest.partition("\t")
            record["H"] = (float(score), words)
        elif kind == "P":
            record["P"] = [float(x) for x in rest.split()]
        else:
            record["A"] = [tuple(map(int, link.split("-"))) for link in rest.split()]
    return records


def load_checkpoint(path: Path, data: Path):
    """``(model in eval mode, task)`` from a checkpoint, reading dictionaries from ``data``
    (the package's one loader, var_attn_plugin.loading)."""
    models, _, task = load_for_inference(path, data)
    return models[0], task


def split_batches(task, split: str, max_tokens: int = 1000):
    """The batches of a binarised split, in fairseq's (length-sorted) order."""
    task.load_dataset(split)
    return task.get_batch_iterator(task.dataset(split), max_tokens=max_tokens).next_epoch_itr(shuffle=False)


def run_aer(capsys, *argv):
    """``varattn-aer`` in this process: ``(exit code, stdout, stderr)``."""
    from var_attn_plugin.tools import aer

    try:
        aer.main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
