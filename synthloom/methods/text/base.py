"""The contract every labelled-text generator meets: seeds in, labelled samples out.

A text generator is constructed from its method config (a plain dict) and asked for
`num_samples` labelled samples spread over the seed labels. It never touches files and
never loads models itself: it asks the `ModelBox` it is given, so tests hand it tiny
random models and the pipeline hands it the real ones. It reports what it cost
(forward passes, tokens) and counts what it discarded, by reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

if TYPE_CHECKING:
    from synthloom.methods.text.sampling import Continuations

CausalLM = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@dataclass(frozen=True)
class SeedSet:
    """The seed examples: texts[i] has label labels[i]; `label_names` sorted, distinct.
    `descriptions`: what a label means, for prompts (`data.label_descriptions`; may be empty)."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert len(self.texts) == len(self.labels), "one label per text"

    def description(self, label: str) -> str | None:
        """The label's description, or None when the config gives none."""
        return self.descriptions.get(label) or None

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def for_label(self, label: str) -> list[str]:
        """The seed texts of one label, in seed order."""
        return [t for t, lab in zip(self.texts, self.labels, strict=True) if lab == label]


@dataclass
class TextSample:
    """One synthetic sample; `info` holds its provenance (seeds shown, attributes, concepts)."""

    text: str
    label: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationStats:
    """What generation cost and what it threw away (reason -> count)."""

    forward_passes: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def count(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n

    def add_sampling_cost(self, cont: Continuations) -> None:
        """Add one sampling call's forward passes and prompt / generated tokens."""
        self.forward_passes += cont.forward_passes
        self.prompt_tokens += cont.prompt_tokens
        self.generated_tokens += cont.generated_tokens

    def count_sampled(self, cont: Continuations) -> None:
        """Add one sampling call's continuations to `metrics["sampled"]`, the denominator of
        the unfinished share (BARE: every draft and refinement; SynAlign: its candidates)."""
        self.metrics["sampled"] = self.metrics.get("sampled", 0.0) + len(cont.texts)

    def add(self, other: GenerationStats) -> None:
        """Accumulate another batch's costs and counts into this one."""
        self.forward_passes += other.forward_passes
        self.prompt_tokens += other.prompt_tokens
        self.generated_tokens += other.generated_tokens
        for reason, n in other.counts.items():
            self.count(reason, n)
        self.metrics.update(other.metrics)


@dataclass
class TextBatch:
    samples: list[TextSample]
    stats: GenerationStats


@dataclass
class ModelBox:
    """Lazily loaded models, by role. `causal_lm(name)` and `encoder()` load once and cache.

    The pipeline builds it with loaders of the real models; tests with tiny ones.
    `progress`, when set, takes the count of samples a generator has accepted so far
    (`report`): the task layer sends it to the run log, so a long generation is not silent.
    """

    load_causal_lm: Callable[[str], CausalLM]
    load_encoder: Callable[[], CausalLM] | None = None
    progress: Callable[[int], None] | None = None
    _lms: dict[str, CausalLM] = field(default_factory=dict, repr=False)
    _encoder: CausalLM | None = field(default=None, repr=False)

    def report(self, done: int) -> None:
        """Tell `progress` (if any) that `done` samples are accepted so far."""
        if self.progress is not None:
            self.progress(done)

    def causal_lm(self, name: str) -> CausalLM:
        if name not in self._lms:
            self._lms[name] = self.load_causal_lm(name)
        return self._lms[name]

    def loaded_dtypes(self) -> dict[str, str]:
        """{name: dtype} of the causal LMs loaded so far, e.g. {"smollm2-135m-instruct":
        "bfloat16"}: what a run records beside its samples."""
        return {
            name: str(getattr(model, "dtype", "")).removeprefix("torch.")
            for name, (model, _) in self._lms.items()
        }

    def encoder(self) -> CausalLM:
        if self._encoder is None:
            if self.load_encoder is None:
                raise RuntimeError("this ModelBox has no encoder loader")
            self._encoder = self.load_encoder()
        return self._encoder


@runtime_checkable
class TextGenerator(Protocol):
    name: ClassVar[str]

    def __init__(self, method: dict[str, Any]) -> None: ...

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        """About `num_samples` samples, balanced over `seeds.label_names` unless the method
        says otherwise; deterministic for a given `seed`. Invalid outputs are dropped and
        counted in `stats.counts`; the text filter stage removes the rest."""
        ...
