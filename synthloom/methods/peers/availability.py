"""Whether a peer generator's third-party package is installed, and the error when it is not.

Peers are installed by the optional extra (`pip install ".[peers]"`). `missing_peer(name)`
says why a peer cannot run (or None); `require_peer(name)` raises `PeerNotInstalled` with the
install command. Only `importlib.util.find_spec` is used: nothing is imported here.
"""

from __future__ import annotations

import importlib.util

from synthloom.errors import SynthloomError

INSTALL_HINT = 'pip install ".[peers]"'

# method name -> (importable module, PyPI distribution)
PEER_PACKAGES: dict[str, tuple[str, str]] = {
    "smote": ("imblearn", "imbalanced-learn"),
    "gaussian_copula": ("sdv", "sdv"),
    "ctgan": ("sdv", "sdv"),
    "tvae": ("sdv", "sdv"),
    "great": ("be_great", "be-great"),
}


class PeerNotInstalled(SynthloomError):
    """A peer method was asked for but its package is not installed."""


def missing_peer(method_name: str) -> str | None:
    """Why peer `method_name` cannot run here (its package is absent), or None if it can.

    Methods that are not peers always return None."""
    if method_name not in PEER_PACKAGES:
        return None
    module, dist = PEER_PACKAGES[method_name]
    if importlib.util.find_spec(module) is not None:
        return None
    return (
        f"method {method_name!r} needs the {dist!r} package, which is not installed. "
        f"Fix: {INSTALL_HINT} (or pip install {dist}) in the project's environment."
    )


def require_peer(method_name: str) -> None:
    """Raise PeerNotInstalled (naming the install command) when the peer's package is absent."""
    reason = missing_peer(method_name)
    if reason is not None:
        raise PeerNotInstalled(f"Peer generator unavailable: {reason}")
