"""The field's tabular generators ("peers"), each behind the `TabularGenerator` contract.

Every peer lives in a third-party package installed by the optional extra
(`pip install ".[peers]"`); the adapters import it only when they fit or load, so this
package imports without them (see `availability.py`). synthloom/methods/registry.py names
each one's config and generator class.

| method            | package            | licence  | module        |
| ----------------- | ------------------ | -------- | ------------- |
| `smote`           | imbalanced-learn   | MIT      | smote.py      |
| `gaussian_copula` | sdv (copulas, rdt) | BSL 1.1  | sdv_models.py |
| `ctgan`, `tvae`   | sdv (ctgan, rdt)   | BSL 1.1  | sdv_models.py |
| `great`           | be-great           | MIT      | great.py      |
"""

from __future__ import annotations

from synthloom.methods.peers.availability import (
    INSTALL_HINT,
    PEER_PACKAGES,
    PeerNotInstalled,
    missing_peer,
    require_peer,
)
from synthloom.methods.peers.great import GReaTGenerator
from synthloom.methods.peers.sdv_models import (
    CTGANGenerator,
    GaussianCopulaGenerator,
    TVAEGenerator,
)
from synthloom.methods.peers.smote import SmoteGenerator

__all__ = [
    "INSTALL_HINT",
    "PEER_PACKAGES",
    "CTGANGenerator",
    "GReaTGenerator",
    "GaussianCopulaGenerator",
    "PeerNotInstalled",
    "SmoteGenerator",
    "TVAEGenerator",
    "missing_peer",
    "require_peer",
]
