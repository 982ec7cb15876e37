"""``varattn-options`` lists the plugin's options, which ``fairseq-train --help`` cannot.

fairseq answers ``--help`` before it adds the options of ``--arch``, ``--task`` and
``--criterion`` (``fairseq.options.parse_args_and_arch``); the first test pins that down, so
that the documentation can point at ``varattn-options`` for as long as it holds.
"""

import re

from helpers import PLUGIN_DIR, fairseq_cli

from var_attn_plugin.criterion import VarAttnCriterionConfig
from var_attn_plugin.lstm.model import VarAttnLSTMConfig
from var_attn_plugin.model import LatentModelConfig
from var_attn_plugin.task import VarAttnTranslationConfig
from var_attn_plugin.transformer.model import VarAttnTransformerConfig

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


def option_block(section: str, flag: str) -> str:
    """The lines of ``flag`` in ``section``: the flag line and the help under it, joined."""
    match = re.search(rf"^  {flag}\b.*?(?=^  \S|\Z)", section, re.M | re.S)
    assert match, flag
    return " ".join(match.group(0).split())


def test_each_architecture_has_a_section_of_its_own_options_with_help_and_default():
    """The latent options once for every architecture, then each architecture's sizes under
    its --arch, each with the help and the default of its config."""
    sections = {block.split(":\n", 1)[0]: block for block in fairseq_cli("varattn-options").stdout.split("\n\n")}
    titles = {
        LatentModelConfig: "model options of every architecture",
        VarAttnLSTMConfig: "model options of --arch varattn_lstm",
        VarAttnTransformerConfig: "model options of --arch varattn_transformer",
    }
    latent = set(LatentModelConfig.__dataclass_fields__)
    for config, title in titles.items():
        (section,) = [block for name, block in sections.items() if name.startswith(title)]
        own = [name for name in config.__dataclass_fields__
               if not name.startswith("_") and (config is LatentModelConfig or name not in latent)]
        assert own
        for name in own:
            field = config.__dataclass_fields__[name]
            block = option_block(section, "--" + name.replace("_", "-"))
            assert " ".join(field.metadata["help"].split()) in block, name
            if field.type is bool:  # a store_true flag
                assert f"(default: {field.default}; the flag sets it to {not field.default})" in block, name
            else:
                assert f"(default: {field.default})" in block, name
        if config is not LatentModelConfig:  # the latent options are listed once, not per architecture
            repeated = [name for name in latent if re.search(rf"^  --{name.replace('_', '-')}\b", section, re.M)]
            assert not repeated, (title, repeated)
    transformer = [block for name, block in sections.items() if name.startswith(titles[VarAttnTransformerConfig])][0]
    assert "varattn_transformer_iwslt_de_en" in transformer.split(":\n", 1)[0]
    assert "--activation-fn {relu,gelu" in transformer
    assert "(default: 4)" in option_block(transformer, "--encoder-attention-heads")
