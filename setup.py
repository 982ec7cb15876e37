"""var-attn for fairseq: latent alignment and variational attention as a fairseq plugin."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="var-attn-fairseq",
    version="0.1.0",
    description="Variational attention (Deng et al., NeurIPS 2018) as a fairseq plugin",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.8",
    packages=find_packages(include=["var_attn_plugin", "var_attn_plugin.*", "varattn_experiments"]),
    install_requires=[
        "torch>=1.13",
        "numpy",
        "sacrebleu>=2.0",
        "sentencepiece",
        "matplotlib",
        "sacremoses",  # Moses tokenisation of the IWSLT14 recipe
        # On Python <= 3.10 the official release works. On 3.11+ it does not import (a
        # dataclass default), and fairseq-fixed must be built from source without its
        # torchaudio requirement: `make install` does that, see README.
        'fairseq==0.12.2; python_version < "3.11"',
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-xdist", "hypothesis", "tensorboardX", "ruff"],
    },
    entry_points={"console_scripts": [
        "varattn-aer = var_attn_plugin.tools.aer:main",
        "varattn-align = var_attn_plugin.tools.align:main",
        "varattn-diagnose = var_attn_plugin.tools.diagnose:main",
        "varattn-options = var_attn_plugin.tools.options:main",
        "varattn-plot = var_attn_plugin.tools.plot:main",
        "varattn-prepare-ding = var_attn_plugin.data.ding:main",
        "varattn-prepare-iwslt14 = var_attn_plugin.data.iwslt14:main",
        "varattn-translate = var_attn_plugin.tools.translate:main",
        "varattn-prepare-libreoffice = var_attn_plugin.data.libreoffice:main",
        "varattn-prepare-libreoffice-help = var_attn_plugin.data.libreoffice_help:main",
        # fairseq's commands with --user-dir, --task (and for training --arch, --criterion) added
        "varattn-train = var_attn_plugin.cli:train",
        "varattn-generate = var_attn_plugin.cli:generate",
        "varattn-interactive = var_attn_plugin.cli:interactive",
        "varattn-validate = var_attn_plugin.cli:validate",
    ]},
)
