"""Tiny randomly initialised models for unit tests, built offline in well under a second.

Same classes as the real models (LlamaForCausalLM, BertModel) with fast tokenizers built
in memory from a fixed corpus, so code under test cannot tell them apart except by quality.
No network, no model packages. The global torch RNG is left untouched, and every process
builds the same tokenizers and weights for the same seed.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

# Fixed training text: printable ASCII plus JSON-ish records, so merges are stable.
_CORPUS = [
    string.printable,
    '{"name": "Alice", "age": 34, "city": "Paris", "score": 0.75, "active": true}',
    '{"text": "The quick brown fox jumps over the lazy dog.", "label": "positive"}',
    "Generate one new record as JSON. Return only the JSON object, nothing else.",
] * 4

# ChatML, as used by SmolLM2, so apply_chat_template works on the tiny model too.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_causal_lm(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A 2-layer, 64-wide Llama and a byte-level BPE tokenizer (any text encodes).

    Specials: <|endoftext|> (bos, unk), <|im_start|>, <|im_end|> (eos = pad), like SmolLM2.
    The tokenizer pads on the left, as load_causal_lm sets it up. Eval mode, CPU, fp32.
    """
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _seeded(LlamaForCausalLM, config, seed), tokenizer


def lively_tiny_causal_lm(
    dtype: torch.dtype = torch.float32,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """`tiny_causal_lm()` with larger random layer weights (std 0.15, fixed seed), in `dtype`.

    Freshly initialised (std 0.02, tied embeddings) it mostly echoes its input token, so greedy
    decoding would repeat BOS forever; with larger weights the next token depends on the
    context, which is what exactness tests of decoding and scoring need to mean anything.
    """
    model, tok = tiny_causal_lm()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.model.layers.parameters():
            if weight.dim() == 2:
                weight.copy_(torch.randn(weight.shape, generator=g) * 0.15)
    return model.to(dtype), tok


def tiny_encoder(seed: int = 0) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """A 2-layer, 32-wide BERT and a lower-casing WordPiece tokenizer ([CLS] text [SEP]).

    Eval mode, CPU, fp32, hidden_size 32, up to 512 positions. The vocabulary is fixed
    (see `_wordpiece_vocab`), so token ids and the embedding size are the same in every
    process.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(models.WordPiece(_wordpiece_vocab(normalizer, splitter), unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _seeded(BertModel, config, seed), tokenizer


def _wordpiece_vocab(
    normalizer: normalizers.Normalizer, splitter: pre_tokenizers.PreTokenizer
) -> dict[str, int]:
    """Specials, every printable character, its `##` continuation, then the corpus's words.

    Built by hand, not by `WordPieceTrainer`: the trainer breaks ties between equally
    frequent merges in Rust hash-map order, which is randomly seeded for every map, so it
    learned a different vocabulary (273 or 274 tokens, different ids) on each call and every
    model built on it trained to different weights (a fine-tuning test passed or failed by
    chance). Any lower-cased text encodes: an unseen word is spelled from characters.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted(set(string.printable.lower()) - set(string.whitespace))
    words = {
        word
        for text in _CORPUS
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))
    }
    tokens = [*specials, *chars, *(f"##{c}" for c in chars), *sorted(words - set(chars))]
    return {token: i for i, token in enumerate(tokens)}


def _seeded(model_cls, config, seed: int):
    """Instantiate `model_cls(config)` from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).eval()
