"""``varattn-options``: every command-line option of the plugin, with its help and default.

``fairseq-train --help`` cannot list them: fairseq answers ``--help`` in its first parse of
the command line, before it adds the options of the chosen ``--arch``, ``--task`` and
``--criterion`` (``fairseq.options.parse_args_and_arch``), so the help of every fairseq
model, task and criterion, this plugin's included, shows only fairseq's general options.
This command builds the plugin's options the way fairseq does (from the same dataclasses)
and prints them in groups: the model (saved in the checkpoint): the latent options of every
architecture, then the sizes of ``--arch varattn_lstm`` and of ``--arch varattn_transformer``;
the criterion (``--criterion varattn_elbo``), the plugin's task options (``--task
varattn_translation``; decoding options, so they work in ``fairseq-generate``,
``fairseq-interactive`` and ``--eval-bleu`` too) and the options the task inherits from
fairseq's translation task.
"""

import argparse
import textwrap
from dataclasses import fields
from typing import Iterable, List, Optional, Sequence

from ..console import ArgumentParser, description_from_docstring

INDENT = 8  # help text under its flag
WIDTH = 100


def option_actions(config, names: Optional[Iterable[str]] = None) -> List[argparse.Action]:
    """The argparse actions fairseq makes from a config dataclass instance (only the fields
    in ``names`` when given), in field order."""
    from fairseq.dataclass.utils import gen_parser_from_dataclass

    parser = ArgumentParser(add_help=False)
    gen_parser_from_dataclass(parser, config)
    wanted = None if names is None else set(names)
    return [action for action in parser._actions if wanted is None or action.dest in wanted]


def describe(action: argparse.Action) -> str:
    """One option: its flags and argument on the first line, then its help and default."""
    if action.option_strings:
        flags = ", ".join(action.option_strings)
    else:
        flags = action.dest.upper() + " (positional)"
    if action.choices is not None:
        flags += " {" + ",".join(map(str, action.choices)) + "}"
    elif action.nargs != 0 and action.option_strings:
        flags += " " + action.dest.upper()
    help_text = (action.help or "").strip()
    if action.nargs == 0:  # a flag: fairseq turns a boolean field into store_true / store_false
        help_text += f" (default: {action.default}; the flag sets it to {not action.default})"
    elif action.required:
        help_text += " (required)"
    else:
        help_text += f" (default: {action.default})"
    body = textwrap.fill(help_text.strip(), WIDTH, initial_indent=" " * INDENT, subsequent_indent=" " * INDENT)
    return f"  {flags}\n{body}"


def sections():
    """``(title, actions)`` for the model, criterion and task options."""
    from fairseq.tasks.translation import TranslationConfig

    from ..criterion import VarAttnCriterionConfig
    from ..lstm.model import VarAttnLSTMConfig
    from ..model import LatentModelConfig
    from ..task import VarAttnTranslationConfig
    from ..transformer.model import VarAttnTransformerConfig

    inherited = {f.name for f in fields(TranslationConfig)}
    own = [f.name for f in fields(VarAttnTranslationConfig) if f.name not in inherited]
    latent = {f.name for f in fields(LatentModelConfig)}

    def architecture(config):
        return option_actions(config(), [f.name for f in fields(config) if f.name not in latent])

    return [
        ("model options of every architecture (--arch varattn_lstm, varattn_transformer and their presets; "
         "saved in the checkpoint)", option_actions(LatentModelConfig())),
        ("model options of --arch varattn_lstm (or varattn_lstm_iwslt_de_en; saved in the checkpoint)",
         architecture(VarAttnLSTMConfig)),
        ("model options of --arch varattn_transformer (or varattn_transformer_iwslt_de_en, "
         "varattn_transformer_small, varattn_transformer_tiny; saved in the checkpoint)",
         architecture(VarAttnTransformerConfig)),
        ("criterion options (--criterion varattn_elbo)", option_actions(VarAttnCriterionConfig())),
        ("task options (--task varattn_translation; decoding, so also for fairseq-generate and "
         "fairseq-interactive)", option_actions(VarAttnTranslationConfig(), own)),
        ("task options inherited from fairseq's translation task (--task varattn_translation)",
         option_actions(TranslationConfig())),
    ]


def format_options() -> str:
    blocks = []
    for title, actions in sections():
        blocks.append(title + ":\n" + "\n".join(describe(action) for action in actions))
    return "\n\n".join(blocks) + "\n"


def build_parser() -> argparse.ArgumentParser:
    return ArgumentParser(
        prog="varattn-options",
        description=description_from_docstring(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    build_parser().parse_args(argv)
    print(format_options(), end="")


if __name__ == "__main__":
    main()
