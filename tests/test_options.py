"""``varattn-options`` lists the plugin's options, which ``fairseq-train --help`` cannot.

fairseq answers ``--help`` before it adds the options of ``--arch``, ``--task`` and
``--criterion`` (``fairseq.options.parse_args_and_arch``); the first test pins that down, so
that the documentation can point at ``varattn-options`` for as long as it holds.
"""

import re

from helpers import PLUGIN_DIR, fairseq_cli

from var_attn_plugin.criterion import VarAttnCriterionConfig
from var_attn_plugin.lstm.model import VarAttnLSTMConfig
from var_attn_plugin.task import VarAttnTranslationConfig

REQUIRED = ("--attention-mode", "--latent-decoding", "--enum-chunk-mb", "--kmax")


def test_fairseq_train_help_lacks_the_plugin_options():
    proc = fairseq_cli("fairseq-train", "--user-dir", PLUGIN_DIR, "--task", "varattn_translation", "--arch",
                       "varattn_lstm", "--criterion", "varattn_elbo", "--help")
    assert "--max-tokens" in proc.stdout  # fairseq's general options are there
    assert not any(flag in proc.stdout for flag in REQUIRED)


def test_varattn_options_lists_every_option_with_help_and_default():
    out = fairseq_cli("varattn-options").stdout
    for flag in REQUIRED:
        assert re.search(rf"^  {flag}\b", out, re.M), flag
    assert "\n  DATA (positional)\n" in out
    for config in (VarAttnLSTMConfig, VarAttnCriterionConfig, VarAttnTranslationConfig):
        for name, field in config.__dataclass_fields__.items():
            if name.startswith("_") or name == "data" or str(field.default).startswith("${"):
                continue  # fairseq's own (--sentence-avg, --train-subset, ... interpolated into the config)
            assert re.search(rf"^  --{name.replace('_', '-')}\b", out, re.M), name
    # the help and the default under the flag
    block = out.split("  --enum-chunk-mb", 1)[1].split("\n  --", 1)[0]
    assert "memory budget (MiB)" in block and "(default: 256)" in " ".join(block.split())
    assert "--attention-mode {soft,marginal,hard-enum" in out
