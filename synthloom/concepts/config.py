"""Config model of SynthLLM (`method.name: synthllm`); synthloom/methods/registry.py names it
(and its stages). Pydantic only, so configs validate without loading any model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthloom.config.base import StrictConfig
from synthloom.config.methods import (
    ClosingRampStrength,
    DecoderDtype,
    NoRepeatNgram,
    ParagraphStop,
    SeedOpeners,
    TokenBudget,
)


class LevelMix(StrictConfig):
    """Relative weights of the combination levels (normalised; a zero weight turns one off)."""

    level1: float = Field(0.2, ge=0, description="one document: its concepts, document shown")
    level2: float = Field(0.4, ge=0, description="several concepts of one document")
    level3: float = Field(0.4, ge=0, description="graph walk: concepts never together in a doc")

    @model_validator(mode="after")
    def _some_level(self) -> LevelMix:
        if self.level1 + self.level2 + self.level3 <= 0:
            raise ValueError("at least one level weight must be positive")
        return self

    def as_mapping(self) -> dict[int, float]:
        return {1: self.level1, 2: self.level2, 3: self.level3}


class SynthLLMConfig(StrictConfig):
    """SynthLLM (arXiv 2503.19551): concepts of the seed documents -> concept graph ->
    combinations at three levels -> one new sample per combination (see synthloom/concepts)."""

    name: Literal["synthllm"]
    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    decoder_dtype: DecoderDtype = "auto"
    task: str = Field("short texts", description='what the data is ("Examples of {task}")')
    output: Literal["labelled", "document", "question"] = Field(
        "labelled", description="what each sample is: a labelled example, a document, a question"
    )
    extractor: Literal["keyphrase", "llm"] = Field(
        "keyphrase", description="keyphrase: TF-IDF (fast, deterministic); llm: JSON list"
    )
    max_concepts_per_document: int = Field(5, gt=0)
    keyphrase_min_df: int = Field(2, ge=1, description="keyphrase: documents a term needs")
    extraction_retries: int = Field(2, ge=0, description="llm: re-asks of an invalid output")
    extraction_temperature: float = Field(0.7, ge=0)
    extraction_max_new_tokens: int = Field(48, gt=0)
    concept_source: Literal["label", "all"] = Field(
        "label",
        description="labelled: a label's combinations from its own seeds' concepts (label), "
        "or from every seed's (all: topics not tied to labels; examples stay the label's)",
    )
    level_mix: LevelMix = Field(default_factory=LevelMix)
    min_concepts: int = Field(2, ge=1, description="concepts per combination, at least")
    max_concepts: int = Field(4, ge=1, description="concepts per combination, at most")
    max_walks: int = Field(50, gt=0, description="level 3: walks tried per combination")
    num_examples: int = Field(2, ge=0, description="seed documents shown per prompt")
    temperature: float = Field(0.8, ge=0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: TokenBudget = Field(
        64, description='"auto": 1.5 x the seeds\' 95th-percentile token length + 8 (min 16)'
    )
    seed_openers: SeedOpeners = 0  # labelled: the opener of a random seed of the label
    no_repeat_ngram: NoRepeatNgram = 0  # the samples, not the concept extraction
    paragraph_stop: ParagraphStop = False  # a question always ends at a blank line
    closing_ramp: ClosingRampStrength = 0.0  # the samples
    batch_size: int = Field(16, gt=0, description="prompts decoded together")

    @model_validator(mode="after")
    def _concept_range(self) -> SynthLLMConfig:
        if self.min_concepts > self.max_concepts:
            raise ValueError("min_concepts must not exceed max_concepts")
        return self
