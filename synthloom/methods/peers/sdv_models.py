"""SDV's single-table synthesizers as generators: Gaussian copula, CTGAN and TVAE.

- `gaussian_copula`: each column mapped to a standard normal through its fitted marginal
  (`default_distribution`), relations held by the normals' correlation matrix (SDV's
  GaussianCopulaSynthesizer on the `copulas` package).
- `ctgan`: conditional GAN with mode-specific normalisation of numeric columns and
  training-by-sampling of categories (Xu et al. 2019, arXiv 1907.00503).
- `tvae`: the same paper's variational autoencoder on that representation.

Metadata comes from the schema (numeric -> numerical, categorical and text ->
categorical, boolean -> boolean, datetime -> datetime); SDV's own processing handles
missing values, rounding and min/max clipping. The fitted synthesizer is saved with SDV's
`save` (cloudpickle) and loaded with `sdv.utils.load_synthesizer`: the pickle is only as
portable as the SDV version that wrote it. Sampling is seeded through SDV's random-state
hook, so the same seed gives the same rows. SDV, CTGAN, RDT and copulas are under the
Business Source License 1.1 (see README, "Peers").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from synthloom.methods.peers.availability import require_peer
from synthloom.methods.peers.frames import from_peer_frame, to_peer_frame
from synthloom.schema import ColumnKind, TableSchema

MODEL_FILE = "synthesizer.pkl"
PARAMS_FILE = "params.json"
TABLE = "table"
_SDTYPES = {
    ColumnKind.NUMERIC: "numerical",
    ColumnKind.CATEGORICAL: "categorical",
    ColumnKind.TEXT: "categorical",
    ColumnKind.BOOLEAN: "categorical",  # as the strings "True" / "False"
    ColumnKind.DATETIME: "datetime",
}


def sdv_metadata(schema: TableSchema) -> Any:
    """SDV `Metadata` for one table named "table" with the schema's column kinds (SDV 2 reads
    the numeric representation from the data: integer columns arrive as Int64)."""
    from sdv.metadata import Metadata

    columns = {col.name: {"sdtype": _SDTYPES[col.kind]} for col in schema.columns}
    return Metadata.load_from_dict({"tables": {TABLE: {"columns": columns}}})


class _SDVGenerator:
    """Shared adapter; subclasses name the SDV class and map their config keys."""

    name: ClassVar[str]
    sdv_class: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.schema: TableSchema | None = None
        self.synthesizer: Any = None

    def synthesizer_kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def fit(self, train: pd.DataFrame, schema: TableSchema, *, seed: int = 0) -> _SDVGenerator:
        require_peer(self.name)
        import sdv.single_table

        from synthloom.models.device import set_seed

        set_seed(seed)  # CTGAN/TVAE initialise and shuffle with the global torch/NumPy RNGs
        self.schema = schema
        cls = getattr(sdv.single_table, self.sdv_class)
        self.synthesizer = cls(sdv_metadata(schema), **self.synthesizer_kwargs())
        self.synthesizer.fit({TABLE: to_peer_frame(train, schema)})
        return self

    def sample(self, num_rows: int, *, seed: int = 0) -> pd.DataFrame:
        assert self.schema is not None and self.synthesizer is not None, "fit or load first"
        self.synthesizer.reset_sampling()
        self.synthesizer._set_random_state(seed)  # SDV's seed hook (no public one in 2.x)
        sampled = self.synthesizer.sample(num_rows)
        frame = sampled[TABLE] if isinstance(sampled, dict) else sampled
        self.last_attempts = num_rows
        return from_peer_frame(frame, self.schema)

    def save(self, directory: Path) -> None:
        assert self.schema is not None and self.synthesizer is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.synthesizer.save(str(directory / MODEL_FILE))
        payload = {"params": self.params, "schema": self.schema.to_dict()}
        (directory / PARAMS_FILE).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> _SDVGenerator:
        require_peer(cls.name)
        from sdv.utils import load_synthesizer

        payload = json.loads((Path(directory) / PARAMS_FILE).read_text(encoding="utf-8"))
        model = cls(**payload["params"])
        model.schema = TableSchema.from_dict(payload["schema"])
        model.synthesizer = load_synthesizer(str(Path(directory) / MODEL_FILE))
        return model

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"sdv_class": self.sdv_class}
        model = getattr(self.synthesizer, "_model", None)
        modules = [getattr(model, a, None) for a in ("_generator", "decoder", "encoder")]
        params = sum(p.numel() for m in modules if m is not None for p in m.parameters())
        if params:
            facts["num_parameters"] = int(params)
        return facts


class GaussianCopulaGenerator(_SDVGenerator):
    """SDV GaussianCopulaSynthesizer; `default_distribution` fits every numeric marginal."""

    name: ClassVar[str] = "gaussian_copula"
    sdv_class: ClassVar[str] = "GaussianCopulaSynthesizer"

    def __init__(self, default_distribution: str = "beta") -> None:
        super().__init__(default_distribution=default_distribution)


class CTGANGenerator(_SDVGenerator):
    """SDV CTGANSynthesizer (Xu et al. 2019); defaults as SDV's except where configured."""

    name: ClassVar[str] = "ctgan"
    sdv_class: ClassVar[str] = "CTGANSynthesizer"

    def __init__(
        self,
        epochs: int = 300,
        batch_size: int = 500,
        pac: int = 10,
        embedding_dim: int = 128,
        generator_dim: list[int] | tuple[int, ...] = (256, 256),
        discriminator_dim: list[int] | tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            pac=pac,
            embedding_dim=embedding_dim,
            generator_dim=list(generator_dim),
            discriminator_dim=list(discriminator_dim),
        )

    def synthesizer_kwargs(self) -> dict[str, Any]:
        kw = dict(self.params)
        kw["generator_dim"] = tuple(kw["generator_dim"])
        kw["discriminator_dim"] = tuple(kw["discriminator_dim"])
        return kw


class TVAEGenerator(_SDVGenerator):
    """SDV TVAESynthesizer (Xu et al. 2019); defaults as SDV's except where configured."""

    name: ClassVar[str] = "tvae"
    sdv_class: ClassVar[str] = "TVAESynthesizer"

    def __init__(
        self,
        epochs: int = 300,
        batch_size: int = 500,
        embedding_dim: int = 128,
        compress_dims: list[int] | tuple[int, ...] = (128, 128),
        decompress_dims: list[int] | tuple[int, ...] = (128, 128),
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            embedding_dim=embedding_dim,
            compress_dims=list(compress_dims),
            decompress_dims=list(decompress_dims),
        )

    def synthesizer_kwargs(self) -> dict[str, Any]:
        kw = dict(self.params)
        kw["compress_dims"] = tuple(kw["compress_dims"])
        kw["decompress_dims"] = tuple(kw["decompress_dims"])
        return kw
