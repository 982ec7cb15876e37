"""Speed and memory of the attention modes next to fairseq's own model, on the same data.

    python -m varattn_experiments.benchmark DATA_BIN [--preset paper|small] [--json out.json]
    python -m varattn_experiments.benchmark DATA_BIN --arch transformer [--preset iwslt|small|tiny]

``--arch lstm`` (the default) compares ``varattn_lstm`` with fairseq's ``lstm``;
``--arch transformer`` compares ``varattn_transformer`` with fairseq's ``transformer`` of the
same sizes (model size, feed-forward size, layers and heads; fairseq's has an output projection
from the model size to the vocabulary where ours has the latent output layer). One run
measures, alternating the systems window by window on the same batches:

- training throughput (target tokens per second, median over windows after a warm-up) of
  fairseq's model at our sizes and of our ``soft``, ``var-sample``, ``var-enum`` and
  ``marginal`` modes; peak memory of each (a fresh process per system: the peak of live
  tensor memory during training beyond the parameters and optimizer state, from torch's
  profiler on CPU, ``max_memory_allocated`` on CUDA);
- generation speed (sentences per second, beam search) of fairseq's model and of ours
  with exact enumeration, K-max and soft decoding, on batches of ``--gen-batch-size``
  sentences formed as fairseq-generate forms them (sorted by length, so little padding),
  with every hypothesis forced to the same length so all systems do the same number of steps;
- the analytic cost model (multiply-adds per target token from the layer sizes, the
  vocabulary and the mean source length: of the training data for training, of the decoded
  sentences for generation) next to each measured ratio. The Transformer's
  (:class:`TransformerCostModel`) reads the padded lengths of the batches measured, since its
  layers compute every position of the padded grid.

Weights are untrained. Speed does not depend on their values, except that exact and K-max
decoding recompute in log space the rare word probabilities below about 1e-31
(``AlignmentOutputLayer.mixture_log_probs``); a trained model has few or none.
"""

import argparse
import ctypes
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from var_attn_plugin.presets import LSTM_PRESETS
from var_attn_plugin.presets import TRANSFORMER_PRESETS as ALL_TRANSFORMER_PRESETS

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "var_attn_plugin"

def lstm_sizes(sizes: Dict[str, int]) -> Dict[str, int]:
    """A preset of var_attn_plugin.presets in the benchmark's terms (and its cost model's)."""
    return dict(embed=sizes["encoder_embed_dim"], encoder_hidden=sizes["encoder_hidden_size"],
                decoder_hidden=sizes["decoder_hidden_size"], attention=sizes["attention_dim"],
                output=sizes["decoder_output_dim"], inference_hidden=sizes["inference_hidden_size"])


def transformer_sizes(sizes: Dict[str, int]) -> Dict[str, int]:
    return dict(embed=sizes["encoder_embed_dim"], ffn=sizes["encoder_ffn_embed_dim"], layers=sizes["encoder_layers"],
                heads=sizes["encoder_attention_heads"], output=sizes["decoder_output_dim"],
                inference_hidden=sizes["inference_hidden_size"], inference_layers=sizes["inference_layers"])


# the paper's IWSLT14 sizes (docs/METHOD.md §3-4) and a quick check, from the one table of sizes
PRESETS: Dict[str, Dict[str, int]] = {name: lstm_sizes(LSTM_PRESETS[name]) for name in ("paper", "small")}
# --arch transformer: the sizes of the registered varattn_transformer_* architectures (docs/METHOD.md §10)
TRANSFORMER_PRESETS: Dict[str, Dict[str, int]] = {
    name: transformer_sizes(ALL_TRANSFORMER_PRESETS[name]) for name in ("iwslt", "small", "tiny")}

TRAIN_SYSTEMS = ("fairseq-lstm", "soft", "var-sample", "var-enum", "marginal")
DECODINGS = ("fairseq-lstm", "soft", "kmax", "exact")

ARCHS = ("lstm", "transformer")
ARCH_PRESETS = {"lstm": PRESETS, "transformer": TRANSFORMER_PRESETS}
DEFAULT_PRESET = {"lstm": "paper", "transformer": "iwslt"}


def baseline(arch: str) -> str:
    """The name of fairseq's own model in the tables: ``fairseq-lstm``, ``fairseq-transformer``."""
    return f"fairseq-{arch}"


def train_systems(arch: str):
    return (baseline(arch),) + TRAIN_SYSTEMS[1:]


def decodings(arch: str):
    return (baseline(arch),) + DECODINGS[1:]


# ---------------------------------------------------------------------------- allocator


def heap_only_allocations() -> bool:
    """Serve every allocation from glibc's heap and never give it back (``mallopt``).

    With glibc's defaults, allocations above a threshold that moves with the process's
    history are fresh ``mmap`` regions, page-faulted on every use: a system that allocates
    large tensors every step (fairseq's ``lstm`` reorders ``S x B x D`` encoder states at
    every beam-search step) then pays costs that depend on what ran before it. Returns False
    where this is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


# ---------------------------------------------------------------------------- systems


def system_argv(data: str, system: str, sizes: Dict[str, int], max_tokens: int, arch: str = "lstm") -> List[str]:
    """fairseq-train arguments that build ``system`` at ``sizes`` (a preset of ``arch``)."""
    if arch == "transformer":
        return transformer_argv(data, system, sizes, max_tokens)
    common = [data, "--user-dir", str(PLUGIN_DIR), "--task", "varattn_translation", "--cpu",
              "--max-tokens", str(max_tokens), "--optimizer", "adam", "--lr", "3e-4",
              "--dropout", "0.3", "--encoder-layers", "2", "--decoder-layers", "2",
              "--encoder-embed-dim", str(sizes["embed"]), "--decoder-embed-dim", str(sizes["embed"]),
              "--encoder-hidden-size", str(sizes["encoder_hidden"]),
              "--decoder-hidden-size", str(sizes["decoder_hidden"])]
    if system == "fairseq-lstm":
        return common + ["--arch", "lstm", "--criterion", "cross_entropy",
                         "--encoder-bidirectional", "--decoder-out-embed-dim", str(sizes["output"])]
    return common + ["--arch", "varattn_lstm", "--criterion", "varattn_elbo",
                     "--attention-mode", system, "--attention-dim", str(sizes["attention"]),
                     "--decoder-output-dim", str(sizes["output"]),
                     "--inference-hidden-size", str(sizes["inference_hidden"])]


def transformer_argv(data: str, system: str, sizes: Dict[str, int], max_tokens: int) -> List[str]:
    """fairseq's ``transformer`` (``fairseq-transformer``) or ``varattn_transformer`` in the
    attention mode ``system``, both at the same sizes (fairseq's defaults for the rest: post-norm,
    ReLU, sinusoidal positions, no dropout on attention weights or after the activation, no
    shared embeddings)."""
    common = [data, "--user-dir", str(PLUGIN_DIR), "--task", "varattn_translation", "--cpu",
              "--max-tokens", str(max_tokens), "--optimizer", "adam", "--lr", "3e-4", "--dropout", "0.3"]
    for side in ("encoder", "decoder"):
        common += [f"--{side}-embed-dim", str(sizes["embed"]), f"--{side}-ffn-embed-dim", str(sizes["ffn"]),
                   f"--{side}-layers", str(sizes["layers"]), f"--{side}-attention-heads", str(sizes["heads"])]
    if system == "fairseq-transformer":
        return common + ["--arch", "transformer", "--criterion", "cross_entropy"]
    return common + ["--arch", "varattn_transformer", "--criterion", "varattn_elbo",
                     "--attention-mode", system, "--decoder-output-dim", str(sizes["output"]),
                     "--inference-hidden-size", str(sizes["inference_hidden"]),
                     "--inference-layers", str(sizes["inference_layers"])]


def build_system(argv: List[str]):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, argv)
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return task, model, criterion


def load_batches(task, model, split: str, max_tokens: int, count: int, seed: int = 1):
    from fairseq import utils

    task.load_dataset(split)
    itr = task.get_batch_iterator(
        dataset=task.dataset(split), max_tokens=max_tokens, seed=seed,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=True,
    ).next_epoch_itr(shuffle=True)
    batches = []
    for sample in itr:
        batches.append(sample)
        if len(batches) == count:
            break
    return batches


def move(sample, device):
    from fairseq import utils

    return utils.move_to_cuda(sample) if device.type == "cuda" else sample


# ---------------------------------------------------------------------------- training


def train_window(model, criterion, optimizer, batches) -> int:
    tokens = 0
    for sample in batches:
        loss, _, _ = criterion(model, sample)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(sample["ntokens"])
    return tokens


def measure_training(args, sizes):
    """Training throughput of each system (``{system: {"tokens_per_s", "windows"}}``) and the
    lengths of the batches measured (:func:`batch_lengths`)."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    systems = {}
    batches = None
    for system in args.train_systems:
        task, model, criterion = build_system(system_argv(args.data, system, sizes, args.max_tokens, args.arch))
        model.to(device).train()
        if batches is None:
            batches = [move(b, device) for b in load_batches(
                task, model, "train", args.max_tokens, args.window * (args.windows + 1))]
        systems[system] = (model, criterion, torch.optim.Adam(model.parameters(), lr=3e-4))
    lengths = batch_lengths(batches, task.target_dictionary.pad())
    windows = [batches[i * args.window:(i + 1) * args.window] for i in range(args.windows + 1)]
    rates: Dict[str, List[float]] = {s: [] for s in systems}
    for w, window in enumerate(windows):  # window 0 is the warm-up
        for system, (model, criterion, optimizer) in systems.items():
            start = time.perf_counter()
            tokens = train_window(model, criterion, optimizer, window)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if w > 0:
                rates[system].append(tokens / (time.perf_counter() - start))
        print(f"  training window {w}/{args.windows} done", file=sys.stderr, flush=True)
    return {s: {"tokens_per_s": statistics.median(r), "windows": r} for s, r in rates.items()}, lengths


def peak_memory_mb(args, system: str) -> float:
    """Peak memory growth of ``system`` training on the first batches, in a fresh process."""
    cmd = [sys.executable, "-m", "varattn_experiments.benchmark", args.data, "--arch", args.arch,
           "--preset", args.preset, "--max-tokens", str(args.max_tokens), "--window", str(args.window),
           "--memory-of", system] + (["--cpu"] if args.cpu else []) + (
               ["--default-allocator"] if args.default_allocator else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_cpu_bytes(fn) -> int:
    """Peak of live CPU tensor memory allocated while ``fn`` runs (torch's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def memory_child(args, sizes) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    task, model, criterion = build_system(system_argv(args.data, args.memory_of, sizes, args.max_tokens, args.arch))
    model.to(device).train()
    batches = [move(b, device) for b in load_batches(task, model, "train", args.max_tokens, args.window)]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    for p in model.parameters():  # create Adam's state before measuring (a zero step)
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_window(model, criterion, optimizer, batches)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return peak_cpu_bytes(lambda: train_window(model, criterion, optimizer, batches)) / 2**20


# ---------------------------------------------------------------------------- generation


def measure_generation(args, sizes) -> Dict[str, Dict[str, float]]:
    from fairseq.sequence_generator import SequenceGenerator

    from var_attn_plugin.latent.outputs import DecodingOptions

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    fairseq_system = baseline(args.arch)
    task, theirs, _ = build_system(system_argv(args.data, fairseq_system, sizes, args.max_tokens, args.arch))
    _, ours, _ = build_system(system_argv(args.data, "var-enum", sizes, args.max_tokens, args.arch))
    # batches as fairseq-generate makes them (sentences sorted by length), a seeded choice of them
    task.load_dataset(args.gen_subset)
    dataset = task.dataset(args.gen_subset)
    batches = list(task.get_batch_iterator(
        dataset=dataset, max_sentences=args.gen_batch_size, seed=1,
    ).next_epoch_itr(shuffle=True))[:args.gen_batches]
    batches = [move(b, device) for b in batches]
    src_lengths = torch.cat([b["net_input"]["src_lengths"] for b in batches]).float()
    padded_lengths = torch.cat([b["net_input"]["src_lengths"].max().expand(b["nsentences"]) for b in batches])
    length = round(float(sum(b["target"].ne(task.target_dictionary.pad()).sum() for b in batches))
                   / float(len(src_lengths)))
    options = {"soft": DecodingOptions("soft"), "kmax": DecodingOptions("kmax", kmax=args.kmax),
               "exact": DecodingOptions("exact")}
    generators = {}
    for decoding in args.decodings:
        model = theirs if decoding == fairseq_system else ours
        model.to(device).eval()
        if decoding != fairseq_system:
            model.configure_decoding(options[decoding])
        # every hypothesis gets exactly `length` tokens: the same number of steps for all
        generators[decoding] = (model, options.get(decoding), SequenceGenerator(
            [model], task.target_dictionary, beam_size=args.beam, max_len_a=0, max_len_b=length,
            min_len=length))
    rates: Dict[str, List[float]] = {d: [] for d in generators}
    with torch.no_grad():
        for r in range(args.gen_rounds + 1):  # round 0 is the warm-up
            for decoding, (model, option, generator) in generators.items():
                if option is not None:
                    model.configure_decoding(option)
                start = time.perf_counter()
                sentences = 0
                for batch in batches:
                    generator.generate([model], batch)
                    sentences += batch["nsentences"]
                if r > 0:
                    rates[decoding].append(sentences / (time.perf_counter() - start))
            print(f"  generation round {r}/{args.gen_rounds} done", file=sys.stderr, flush=True)
    return {"length": length, "sentences": len(src_lengths),
            "mean_source_length": float(src_lengths.mean()),
            "source_real_fraction": float(src_lengths.sum() / padded_lengths.float().sum()),
            **{d: {"sentences_per_s": statistics.median(r), "rounds": r} for d, r in rates.items()}}


# ---------------------------------------------------------------------------- cost model


@dataclass
class CostModel:
    """Multiply-adds per target token (forward pass) from the layer sizes.

    ``S`` mean source length, ``ratio`` source tokens per target token, ``V`` vocabulary.
    """

    E: int
    He: int
    Hd: int
    A: int
    O: int  # noqa: E741  (the output size, as in the docstrings)
    Hq: int
    V: int
    S: float
    ratio: float
    recompute: bool = True  # the enumeration is chunked (recomputed in the backward pass)

    def encoder(self) -> float:  # 2-layer bidirectional LSTM, per target token
        D = 2 * self.He
        return self.ratio * 2 * 4 * self.He * ((self.E + self.He) + (D + self.He))

    def fairseq_lstm_step(self) -> float:
        D, H = 2 * self.He, self.Hd
        lstm = 4 * H * (self.E + H + H) + 4 * H * (H + H)
        attention = H * D + self.S * D * 2 + (D + H) * H
        additional_fc = H * self.O if H != self.O else 0  # fairseq adds it only when sizes differ
        return lstm + attention + additional_fc + self.O * self.V

    def ours_step(self) -> float:
        """Recurrence and prior: everything but the output layer's vocabulary projection."""
        D, H = 2 * self.He, self.Hd
        lstm = 4 * H * (self.E + D + H) + 4 * H * (H + H)
        prior = H * self.A + self.S * self.A + self.S * D
        keys = self.ratio * D * (self.A + self.O)  # per-sentence projections
        return lstm + prior + keys + self.O * H

    def soft_output(self) -> float:
        """Projection of the context and the vocabulary projection."""
        return self.O * 2 * self.He + self.O * self.V

    def enum_output(self, candidates: float) -> float:
        return candidates * self.O * self.V

    def inference_network(self) -> float:
        D = 2 * self.Hq
        bilstm = 2 * 4 * self.Hq * ((self.E + self.Hq) + (D + self.Hq))
        return (1 + self.ratio) * bilstm + D * D + self.S * D

    def training(self, system: str) -> float:
        """Forward + backward (x3); enumeration in chunks recomputes its forward once more."""
        if system == "fairseq-lstm":
            return 3 * (self.encoder() + self.fairseq_lstm_step())
        base = self.encoder() + self.ours_step()
        if system == "soft":
            return 3 * (base + self.soft_output())
        if system == "var-sample":
            return 3 * (base + self.inference_network() + self.soft_output() + self.enum_output(1))
        extra = self.inference_network() if system.startswith("var") else 0.0
        return 3 * (base + extra) + (4 if self.recompute else 3) * self.enum_output(self.S)

    def decoding(self, system: str, kmax: int) -> float:
        """Per hypothesis and step (the encoder runs once per sentence and is left out)."""
        if system == "fairseq-lstm":
            return self.fairseq_lstm_step()
        step = self.ours_step() - self.ratio * 2 * self.He * (self.A + self.O)
        if system == "soft":
            return step + self.soft_output()
        return step + self.enum_output(self.S if system == "exact" else min(kmax, self.S))


@dataclass
class TransformerCostModel:
    """Multiply-adds per real target token (forward pass) of fairseq's ``transformer`` and of
    ``varattn_transformer`` from the layer sizes (``--arch transformer``).

    ``C`` model size (encoder and decoder), ``F`` feed-forward size, ``Le`` / ``Ld`` encoder /
    decoder layers, ``O`` output size, ``Hq`` inference LSTM size per direction, ``Lq`` its
    layers, ``V`` vocabulary. The lengths are those of the padded batches, since the layers
    compute every position of a batch: ``S`` source positions of a sentence (what every
    attention to the source reads and what enumeration scores), ``T`` the positions one target
    position's self-attention reads (training: every query reads every key, the causal mask
    comes after the products; decoding: the mean prefix length), ``ratio`` source positions per
    real target token, ``target_grid`` target positions per real target token (training: the
    decoders and fairseq's output projection compute pads too; our output layer scores real
    tokens only), ``steps`` decoder steps per hypothesis (decoding: what the cross-attention's
    keys and values, computed once per hypothesis, are spread over). Heads do not change the
    count: they split ``C``.
    """

    C: int
    F: int
    Le: int
    Ld: int
    O: int  # noqa: E741  (the output size, as in the docstrings)
    Hq: int
    Lq: int
    V: int
    S: float
    T: float
    ratio: float
    target_grid: float = 1.0
    steps: float = 1.0
    recompute: bool = True  # the enumeration is chunked (recomputed in the backward pass)

    def encoder(self) -> float:
        """Per target token: ``ratio`` source positions, each through ``Le`` layers of
        self-attention (projections of queries, keys, values and output; ``S`` scores and ``S``
        weighted values) and feed-forward."""
        C = self.C
        return self.ratio * self.Le * (4 * C * C + 2 * self.S * C + 2 * C * self.F)

    def cross_keys(self) -> float:
        """Per source position: the keys and values of every decoder layer's cross-attention
        (once per sentence in training, once per hypothesis in beam search)."""
        return self.Ld * 2 * self.C * self.C

    def decoder_layers(self) -> float:
        """One target position through ``Ld`` layers: self-attention (4 projections, ``T``
        scores and weighted values), cross-attention (queries and output, ``S`` scores and
        weighted values; its keys and values are :meth:`cross_keys`), feed-forward."""
        C = self.C
        self_attention = 4 * C * C + 2 * self.T * C
        cross_attention = 2 * C * C + 2 * self.S * C
        return self.Ld * (self_attention + cross_attention + 2 * C * self.F)

    def fairseq_step(self) -> float:
        """One target position of fairseq's decoder and its output projection ``C -> V``."""
        return self.decoder_layers() + self.C * self.V

    def ours_grid(self) -> float:
        """One target position of our decoder, the prior ``(U h) · x̃`` (``U h`` and ``S``
        scores) and the context ``c_t``."""
        return self.decoder_layers() + self.C * self.C + 2 * self.S * self.C

    def ours_step(self) -> float:
        """:meth:`ours_grid` and ``W_oh h``: everything but the source side of the output
        layer and the vocabulary projection."""
        return self.ours_grid() + self.C * self.O

    def soft_output(self) -> float:
        """``W_ox c_t`` and the vocabulary projection."""
        return self.O * self.C + self.O * self.V

    def enum_output(self, candidates: float) -> float:
        return candidates * self.O * self.V

    def inference_network(self) -> float:
        """q's bidirectional LSTMs over the source and target embeddings (size ``C``; packed,
        real tokens) and its bilinear scores ``(U g_t) · f_j`` (every target position)."""
        D = 2 * self.Hq
        bilstm = 2 * 4 * self.Hq * ((self.C + self.Hq) + (self.Lq - 1) * (D + self.Hq))
        return (1 + self.ratio) * bilstm + self.target_grid * (D * D + self.S * D)

    def training(self, system: str) -> float:
        """Forward + backward (x3); enumeration in chunks recomputes its forward once more; the
        soft baseline of ``var-sample`` is detached (forward only)."""
        g = self.target_grid
        if system == "fairseq-transformer":
            return 3 * (self.encoder() + self.ratio * self.cross_keys() + g * self.fairseq_step())
        # W_ox x̃ once per source position in every mode; W_oh h and the outputs on real tokens
        base = (self.encoder() + self.ratio * (self.cross_keys() + self.C * self.O) + g * self.ours_grid()
                + self.C * self.O)
        if system == "soft":
            return 3 * (base + self.soft_output())
        if system == "var-sample":
            return 3 * (base + self.inference_network() + self.enum_output(1)) + self.soft_output()
        extra = self.inference_network() if system.startswith("var") else 0.0
        return 3 * (base + extra) + (4 if self.recompute else 3) * self.enum_output(self.S)

    def decoding(self, system: str, kmax: int) -> float:
        """Per hypothesis and step. The cross-attention's keys and values are computed once per
        hypothesis (spread over ``steps``); the encoder runs once per sentence and is left out.
        Exact and K-max decoding recompute ``W_ox x̃`` at every step (beam search reorders
        the encoder states); soft decoding reads only ``W_ox c_t``."""
        keys = self.S * self.cross_keys() / self.steps
        if system == "fairseq-transformer":
            return self.fairseq_step() + keys
        step = self.ours_step() + keys
        if system == "soft":
            return step + self.soft_output()
        candidates = self.S if system == "exact" else min(kmax, self.S)
        return step + self.S * self.C * self.O + self.enum_output(candidates)


def batch_lengths(batches, pad: int) -> Dict[str, float]:
    """Sentences, real target tokens and the padded grids of training batches: target
    positions (``Σ B·T``), target self-attention pairs (``Σ B·T²``), source positions
    (``Σ B·S``), with ``T`` and ``S`` each batch's padded lengths."""
    out = dict(sentences=0.0, target_tokens=0.0, target_positions=0.0, target_pairs=0.0, source_positions=0.0)
    for b in batches:
        B, T = b["target"].shape
        out["sentences"] += B
        out["target_tokens"] += float(b["target"].ne(pad).sum())
        out["target_positions"] += B * T
        out["target_pairs"] += B * T * T
        out["source_positions"] += B * b["net_input"]["src_tokens"].size(1)
    return out


# ---------------------------------------------------------------------------- report


def report(results, cost, decoding_cost, args) -> str:
    """The two tables; ``cost`` and ``decoding_cost`` are the architecture's cost model at the
    training data's and at the decoded sentences' mean source length."""
    fairseq_system = baseline(args.arch)
    label = fairseq_system.replace("-", " ")  # "fairseq lstm"
    arch = padding = ""
    if args.arch != "lstm":
        n = results["training_batches"]
        arch = f"`--arch {args.arch}`, "
        padding = f"{n['target_tokens'] / n['target_positions']:.0%} of the padded target positions real, "
    lines = [f"## Training ({arch}`--max-tokens {args.max_tokens}`, preset `{args.preset}`, {padding}"
             f"{results['device']}, {results['threads']} threads, allocator: {results['allocator']})", "",
             f"| system | tokens/s | vs {label} | vs soft | predicted vs soft | measured/predicted "
             "| peak memory (MiB) | vs soft |",
             "|---|---|---|---|---|---|---|---|"]
    train = results["training"]
    memory = results.get("memory", {})
    for system, r in train.items():
        rate = r["tokens_per_s"]
        vs_fairseq = (rate / train[fairseq_system]["tokens_per_s"] if fairseq_system in train
                      else float("nan"))
        vs_soft = rate / train["soft"]["tokens_per_s"] if "soft" in train else float("nan")
        predicted = cost.training("soft") / cost.training(system)
        mem = memory.get(system, float("nan"))
        mem_soft = memory.get("soft", 0.0) or float("nan")
        lines.append(f"| {system} | {rate:.0f} | {vs_fairseq:.2f}x | {vs_soft:.2f}x | {predicted:.2f}x | "
                     f"{(1 / vs_soft) / (1 / predicted):.2f} | {mem:.0f} | {mem / mem_soft:.2f}x |")
    gen = results["generation"]
    lines += ["", f"## Generation (beam {args.beam}, batches of {args.gen_batch_size}, "
              f"{gen['length']} tokens per hypothesis, mean source length {gen['mean_source_length']:.1f}, "
              f"{gen['source_real_fraction']:.0%} of the padded source positions real)", "",
              f"| decoding | sentences/s | vs {label} | predicted vs {label} | measured/predicted |",
              "|---|---|---|---|---|"]
    for decoding in args.decodings:
        rate = gen[decoding]["sentences_per_s"]
        ratio = (rate / gen[fairseq_system]["sentences_per_s"] if fairseq_system in gen
                 else float("nan"))
        predicted = (decoding_cost.decoding(fairseq_system, args.kmax)
                     / decoding_cost.decoding(decoding, args.kmax))
        lines.append(f"| {decoding} | {rate:.1f} | {ratio:.2f}x | {predicted:.2f}x | {predicted / ratio:.2f} |")
    lines += ["", "`measured/predicted` is the measured cost ratio over the cost model's: 1.00 means no "
              "overhead beyond the arithmetic."]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] = None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="binarised data directory (fairseq-preprocess output)")
    p.add_argument("--arch", choices=ARCHS, default="lstm",
                   help="lstm: varattn_lstm next to fairseq's lstm; transformer: varattn_transformer "
                        "next to fairseq's transformer")
    presets = sorted(set(PRESETS) | set(TRANSFORMER_PRESETS))
    p.add_argument("--preset", choices=presets, default=None,
                   help="layer sizes: " + "; ".join(
                       f"--arch {a}: {', '.join(sorted(ARCH_PRESETS[a]))} (default {DEFAULT_PRESET[a]})"
                       for a in ARCHS))
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--window", type=int, default=3, help="training batches per timing window")
    p.add_argument("--windows", type=int, default=5, help="timed windows per system (after one warm-up)")
    all_systems = list(TRAIN_SYSTEMS) + [baseline("transformer")]
    all_decodings = list(DECODINGS) + [baseline("transformer")]
    p.add_argument("--train-systems", nargs="+", choices=all_systems,
                   help="default: all of the --arch (fairseq-lstm or fairseq-transformer, then the modes)")
    p.add_argument("--decodings", nargs="+", choices=all_decodings,
                   help="default: all of the --arch (fairseq-lstm or fairseq-transformer, soft, kmax, exact)")
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--kmax", type=int, default=5)
    p.add_argument("--gen-subset", default="valid")
    p.add_argument("--gen-batch-size", type=int, default=64)
    p.add_argument("--gen-batches", type=int, default=2)
    p.add_argument("--gen-rounds", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the per-system memory processes")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    p.add_argument("--default-allocator", action="store_true",
                   help="keep glibc's default allocation policy (by default every allocation comes from "
                        "the heap, so no system pays page faults that depend on what ran before it)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.preset is None:
        args.preset = DEFAULT_PRESET[args.arch]
    elif args.preset not in ARCH_PRESETS[args.arch]:
        p.error(f"--preset {args.preset} is not a preset of --arch {args.arch}: choose one of "
                f"{', '.join(sorted(ARCH_PRESETS[args.arch]))}")
    for option, chosen, allowed in (("--train-systems", args.train_systems, train_systems(args.arch)),
                                    ("--decodings", args.decodings, decodings(args.arch))):
        wrong = [c for c in chosen or () if c not in allowed]
        if wrong:
            p.error(f"{option} {' '.join(wrong)}: not a choice with --arch {args.arch} "
                    f"(choose from {', '.join(allowed)})")
    args.train_systems = args.train_systems or list(train_systems(args.arch))
    args.decodings = args.decodings or list(decodings(args.arch))
    return args


def cost_models(args, sizes, results, task, soft_model):
    """The architecture's cost model in training and in decoding.

    LSTM: the training data's mean source length and source tokens per target token; in
    decoding the decoded sentences' mean source length. Transformer: the padded lengths of the
    batches measured (source positions per sentence and per real target token, target
    positions per real target token, self-attention pairs per target position); in decoding
    the decoded batches' padded source length, the decoder steps of a hypothesis and its mean
    prefix length.
    """
    V = len(task.target_dictionary)
    generation = results["generation"]
    if args.arch == "transformer":
        n = results["training_batches"]
        cost = TransformerCostModel(
            C=sizes["embed"], F=sizes["ffn"], Le=sizes["layers"], Ld=sizes["layers"], O=sizes["output"],
            Hq=sizes["inference_hidden"], Lq=sizes["inference_layers"], V=V,
            S=n["source_positions"] / n["sentences"], T=n["target_pairs"] / n["target_positions"],
            ratio=n["source_positions"] / n["target_tokens"], target_grid=n["target_positions"] / n["target_tokens"])
    else:
        task.load_dataset("train")
        dataset = task.dataset("train")
        src_tokens = float(dataset.src_sizes.sum())
        tgt_tokens = float(dataset.tgt_sizes.sum())
        cost = CostModel(E=sizes["embed"], He=sizes["encoder_hidden"], Hd=sizes["decoder_hidden"],
                         A=sizes["attention"], O=sizes["output"], Hq=sizes["inference_hidden"],
                         V=V, S=float(dataset.src_sizes.mean()), ratio=src_tokens / tgt_tokens)
    # the output layer's own rule: a batch of up to --max-tokens target rows (each scoring the
    # mean source length of candidates) is chunked, and recomputed, when it exceeds a chunk
    rows_per_chunk = soft_model.decoder.alignment_output.rows_per_chunk(max(1, round(cost.S)))
    cost.recompute = args.max_tokens > rows_per_chunk
    if args.arch == "transformer":
        # `length` tokens and EOS; step i (from 0) reads i + 1 positions of the prefix
        steps = generation["length"] + 1
        decoding_cost = dataclasses.replace(
            cost, S=generation["mean_source_length"] / generation["source_real_fraction"],
            T=(steps + 1) / 2, ratio=1.0, target_grid=1.0, steps=steps)
    else:
        # decoding: the mean source length of the sentences decoded
        decoding_cost = dataclasses.replace(cost, S=generation["mean_source_length"])
    return cost, decoding_cost


def main(argv: Sequence[str] = None):
    args = parse_args(argv)
    sizes = ARCH_PRESETS[args.arch][args.preset]
    torch.manual_seed(1)
    allocator = "default" if args.default_allocator or not heap_only_allocations() else "heap only"
    if args.memory_of:
        print(memory_child(args, sizes))
        return
    device = "cuda" if torch.cuda.is_available() and not args.cpu else f"cpu ({os.cpu_count()} cores)"
    results = {"device": device, "arch": args.arch, "preset": args.preset, "sizes": sizes,
               "torch": torch.__version__, "allocator": allocator, "threads": torch.get_num_threads()}
    print("measuring training throughput", file=sys.stderr)
    results["training"], results["training_batches"] = measure_training(args, sizes)
    if not args.no_memory:
        print("measuring peak memory", file=sys.stderr)
        results["memory"] = {s: peak_memory_mb(args, s) for s in args.train_systems}
    print("measuring generation speed", file=sys.stderr)
    results["generation"] = measure_generation(args, sizes)

    task, soft_model, _ = build_system(system_argv(args.data, "soft", sizes, args.max_tokens, args.arch))
    cost, decoding_cost = cost_models(args, sizes, results, task, soft_model)
    results["cost_model"] = {
        "vocabulary": cost.V, "mean_source_length": cost.S,
        "training_macs_per_token": {s: cost.training(s) for s in train_systems(args.arch)},
        "decoding_mean_source_length": decoding_cost.S,
        "decoding_macs_per_step": {d: decoding_cost.decoding(d, args.kmax) for d in decodings(args.arch)},
    }
    if args.arch == "transformer":  # padded lengths (see cost_models)
        results["cost_model"].update(
            source_positions_per_token=cost.ratio, target_positions_per_token=cost.target_grid,
            self_attention_positions=cost.T, decoding_steps=decoding_cost.steps,
            decoding_mean_prefix_length=decoding_cost.T)
    table = report(results, cost, decoding_cost, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
