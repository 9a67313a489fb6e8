"""TabSyn (arXiv 2310.09656), our implementation: per-column latent tokens + latent diffusion.

| module        | what                                                            |
| ------------- | --------------------------------------------------------------- |
| columns.py    | the table as quantile-normal numbers and category codes, back    |
| vae.py        | the per-column-token VAE (tokenizer, transformers, heads, loss)  |
| train.py      | VAE training: beta on plateaus, early stopping, checkpoints      |
| generator.py  | `TabSynGenerator`: fit / sample / conditions / save / load       |
"""

from synthloom.methods.tabsyn.generator import TabSynGenerator

__all__ = ["TabSynGenerator"]
