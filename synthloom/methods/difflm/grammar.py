"""Schema-constrained decoding: only token sequences that spell a valid record are sampled.

A record's serialization (`synthloom.serialize`, json or compact) is a fixed sequence of
segments: literal text (braces, quoted keys, separators) and one slot per column whose
language the schema fixes:
- categorical -> one of the training categories as a JSON string (or null if nullable),
- boolean -> true / false,
- numeric -> -?(0|[1-9][0-9]*)(.[0-9]+)?(e-[0-9]{1,2})? with at most `max_frac_digits`
  fraction digits, integers only for integer columns (the only exponents `encode_value`
  writes inside a training range of < 10^float_digits are the negative ones of tiny
  magnitudes; a positive one would leave the range), and an integer part inside the
  training range widened by `widening` of its span on each side: per sign, the magnitude's
  integer part m must satisfy floor(lo) <= m <= floor(hi) for that sign's magnitude bounds
  (a fraction may overshoot by < 1). The digits are read left to right, so the automaton
  keeps, beside the digit count, how the prefix compares (<, =, >) with the bounds' digits,
  and admits a digit only while some completion stays within them,
- datetime / text -> a JSON string without escapes, quotes or newlines.
`RecordGrammar` is that language as a character automaton with a small, finite state set
(literal offsets, category prefixes, number phases). `TokenConstraint` lifts it to the
decoder's vocabulary: for an automaton state, the tokens whose characters it accepts (a
boolean mask over the vocabulary) and the state each of them leads to, computed once per
state on first use and cached. The decoding loop masks disallowed logits to -inf before
sampling and finishes a row the moment its state is `END` (no end-of-sequence token needed).

This departs from DiffLM's generate-then-filter (arXiv 2411.03250, section 3.3): the paper's
decoder is free and invalid records are resampled; here the decoder can only write valid
ones, so the valid rate no longer depends on training length, and the probability mass the
frozen LM puts on invented categories is renormalised over the real ones. `constrained:
false` in the method config restores the paper's behaviour (an ablation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

State = tuple  # ("lit", seg, offset) | ("choice", seg, prefix) | ("str", seg, phase) | END
#                | ("num", seg, phase, n[, negative, vs_high, vs_low])
END: State = ("end",)
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Choice:
    """One of `options` verbatim; options must be prefix-free (quoted strings, null, true)."""

    options: tuple[str, ...]


@dataclass(frozen=True)
class IntRange:
    """Inclusive bounds on the integer part of a number's magnitude, as digit strings."""

    low: str
    high: str

    @classmethod
    def of(cls, low: int, high: int) -> IntRange:
        return cls(str(max(low, 0)), str(max(high, 0)))

    def can_end(self, n: int, above_low: str) -> bool:
        """An integer part of n digits whose prefix compares `above_low` with `low`."""
        return n > len(self.low) or (n == len(self.low) and above_low != "<")

    def viable(self, n: int, vs_high: str, vs_low: str) -> bool:
        """Some integer part of n' >= n digits extending this prefix lies in the range."""
        for total in range(n, len(self.high) + 1):
            fits_high = total < len(self.high) or vs_high != ">"
            fits_low = total > len(self.low) or (total == len(self.low) and vs_low != "<")
            if fits_high and fits_low and (total > n or self.can_end(n, vs_low)):
                return True
        return False


UNBOUNDED = IntRange("0", "9" * 15)


@dataclass(frozen=True)
class Number:
    integer: bool
    max_frac_digits: int
    nullable: bool
    positive: IntRange | None = UNBOUNDED  # None: no value >= 0 is in range
    negative: IntRange | None = UNBOUNDED  # None: no value < 0 is in range

    @property
    def tiny_in_range(self) -> bool:
        """Magnitudes below 1 are in range (exponents e-NN write only those)."""
        return all(b is None or b.low == "0" for b in (self.positive, self.negative))


@dataclass(frozen=True)
class String:
    nullable: bool


Segment = Literal | Choice | Number | String


def _int_ranges(column: ColumnSchema, widening: float) -> tuple[IntRange | None, ...]:
    """(positive, negative) integer-part ranges of [lo - w, hi + w], w = widening * span."""
    lo, hi = column.minimum, column.maximum
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return UNBOUNDED, UNBOUNDED
    pad = (hi - lo) * widening
    lo, hi = lo - pad, hi + pad
    positive = IntRange.of(math.floor(max(lo, 0.0)), math.floor(hi)) if hi >= 0 else None
    negative = IntRange.of(math.floor(max(-hi, 0.0)), math.floor(-lo)) if lo < 0 else None
    return positive, negative


def column_segment(column: ColumnSchema, float_digits: int, widening: float = 0.1) -> Segment:
    """The slot of one column, matching `serialize.encode_value`'s output; numbers stay
    inside the training range widened by `widening` of its span on each side."""
    null = ("null",) if column.nullable else ()
    if column.kind is ColumnKind.CATEGORICAL and column.categories:
        quoted = tuple(json.dumps(c, ensure_ascii=False) for c in column.categories)
        return Choice(quoted + null)
    if column.kind is ColumnKind.BOOLEAN:  # categories ("False", "True"), or one of them
        allowed = column.categories or ("False", "True")
        return Choice(tuple(v for v in ("true", "false") if v.title() in allowed) + null)
    if column.kind is ColumnKind.NUMERIC:
        positive, negative = _int_ranges(column, widening)
        return Number(column.integer, float_digits, column.nullable, positive, negative)
    return String(nullable=column.nullable)


@dataclass(frozen=True)
class RecordGrammar:
    """The character language of one serialized record (json or compact format)."""

    segments: tuple[Segment, ...]

    @classmethod
    def for_schema(
        cls, schema: TableSchema, fmt: str, float_digits: int = 6, widening: float = 0.1
    ) -> RecordGrammar:
        if fmt not in ("json", "compact"):
            raise ValueError(f"constrained decoding needs the json or compact format, not {fmt!r}")
        parts: list[Segment] = [Literal("{" if fmt == "json" else "[")]
        for i, column in enumerate(schema.columns):
            sep = "" if i == 0 else ", "
            key = json.dumps(column.name, ensure_ascii=False) + ": " if fmt == "json" else ""
            parts += [Literal(sep + key), column_segment(column, float_digits, widening)]
        parts.append(Literal("}" if fmt == "json" else "]"))
        merged: list[Segment] = []
        for part in parts:  # adjacent literals -> one; empty literals dropped
            if isinstance(part, Literal) and merged and isinstance(merged[-1], Literal):
                merged[-1] = Literal(merged[-1].text + part.text)
            elif not (isinstance(part, Literal) and not part.text):
                merged.append(part)
        for part in merged:
            if isinstance(part, Choice):
                _check_prefix_free(part.options)
        return cls(tuple(merged))

    # -- the automaton ------------------------------------------------------------------
    def start(self) -> State:
        return self._enter(0)

    def _enter(self, seg: int) -> State:
        """The state at the start of segment `seg` (END past the last one)."""
        if seg >= len(self.segments):
            return END
        part = self.segments[seg]
        if isinstance(part, Literal):
            return ("lit", seg, 0)
        if isinstance(part, Choice):
            return ("choice", seg, "")
        if isinstance(part, Number):
            return ("num", seg, "start", 0)
        return ("str", seg, "open")

    def step(self, state: State, ch: str) -> State | None:
        """The state after reading `ch`, or None when `ch` is not allowed here."""
        if state == END:
            return None
        kind, seg = state[0], state[1]
        part = self.segments[seg]
        if kind == "lit":
            offset = state[2]
            if part.text[offset] != ch:
                return None
            return ("lit", seg, offset + 1) if offset + 1 < len(part.text) else self._enter(seg + 1)
        if kind == "choice":
            prefix = state[2] + ch
            alive = [o for o in part.options if o.startswith(prefix)]
            if not alive:
                return None
            return self._enter(seg + 1) if prefix in alive else ("choice", seg, prefix)
        if kind == "num":
            return self._number(part, state, ch)
        return self._string_step(part, seg, state[2], ch)

    def _number(self, part: Number, state: State, ch: str) -> State | None:
        """Phases: start, sign, null(n), zero, int(n digits), dot, frac(n), e, esign, exp(n).
        zero and int states also carry (negative, prefix vs high, prefix vs low) for the
        integer-part bounds of their sign."""
        seg, phase, n = state[1], state[2], state[3]
        if phase == "null":
            if "null"[n] != ch:
                return None
            return ("num", seg, "null", n + 1) if n + 1 < 4 else self._enter(seg + 1)
        if phase in ("start", "sign"):
            negative = phase == "sign"
            if phase == "start" and ch == "-" and part.negative is not None:
                return ("num", seg, "sign", 0)
            if phase == "start" and ch == "n" and part.nullable:
                return ("num", seg, "null", 1)
            bounds = part.negative if negative else part.positive
            if bounds is None or ch not in _DIGITS:
                return None
            if ch == "0":
                return ("num", seg, "zero", 1, negative, "<", "=") if bounds.low == "0" else None
            return _digit(("num", seg, "int", 0, negative, "=", "="), bounds, ch)
        if phase == "dot":
            return ("num", seg, "frac", 1) if ch in _DIGITS else None
        if phase == "e":
            return ("num", seg, "esign", 0) if ch == "-" else None
        if phase == "esign":
            return ("num", seg, "exp", 1) if ch in _DIGITS else None
        # Accepting phases: zero, int, frac, exp. Continue the number, or end it and let the
        # next segment read `ch`.
        if phase == "int":
            bounds = part.negative if state[4] else part.positive
            if ch in _DIGITS:
                return _digit(state, bounds, ch)
            if not bounds.can_end(n, state[6]):
                return None  # too few digits for the low bound yet
        if phase in ("zero", "int") and ch == "." and not part.integer:
            return ("num", seg, "dot", 0)
        if phase == "frac" and ch in _DIGITS and n < part.max_frac_digits:
            return ("num", seg, "frac", n + 1)
        if phase in ("zero", "int", "frac") and ch == "e" and not part.integer:
            if not part.tiny_in_range:
                return None
            return ("num", seg, "e", 0)
        if phase == "exp" and ch in _DIGITS and n < 2:
            return ("num", seg, "exp", n + 1)
        following = self._enter(seg + 1)
        return None if following == END else self.step(following, ch)

    def _string_step(self, part: String, seg: int, phase: str, ch: str) -> State | None:
        if phase == "open":
            if ch == '"':
                return ("str", seg, "in")
            if ch == "n" and part.nullable:
                return ("str", seg, "null1")
            return None
        if phase.startswith("null"):
            i = int(phase[4:])
            if "null"[i] != ch:
                return None
            return ("str", seg, f"null{i + 1}") if i + 1 < 4 else self._enter(seg + 1)
        if ch == '"':
            return self._enter(seg + 1)
        if ch == "\\" or ch < " " or ch in "\u2028\u2029":
            return None
        return state_in_string(seg)

    def accepts(self, text: str) -> bool:
        """True when `text` is a complete record of this language."""
        state: State | None = self.start()
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return False
        return state == END


def _compare(prefix_vs: str, digit: str, bound: str, position: int) -> str:
    """How a prefix compares with `bound` after appending `digit` at `position`."""
    if prefix_vs != "=" or position >= len(bound):
        return prefix_vs
    return "<" if digit < bound[position] else (">" if digit > bound[position] else "=")


def _digit(state: State, bounds: IntRange, ch: str) -> State | None:
    """The int state after appending digit `ch`, or None when no completion is in range.

    States whose integer part cannot end yet (too few digits for the low bound) are still
    returned when a longer part can; `_number` refuses to end them."""
    seg, n, negative, vs_high, vs_low = state[1], state[3], state[4], state[5], state[6]
    vs_high = _compare(vs_high, ch, bounds.high, n)
    vs_low = _compare(vs_low, ch, bounds.low, n)
    if n + 1 > len(bounds.high) or not bounds.viable(n + 1, vs_high, vs_low):
        return None
    return ("num", seg, "int", n + 1, negative, vs_high, vs_low)


def state_in_string(seg: int) -> State:
    return ("str", seg, "in")


def _check_prefix_free(options: tuple[str, ...]) -> None:
    for a in options:
        for b in options:
            assert a == b or not b.startswith(a), f"choice options not prefix-free: {a!r}, {b!r}"


class _TrieNode:
    """A prefix tree over token texts: children by next character, tokens ending here."""

    __slots__ = ("children", "token_ids")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.token_ids: list[int] = []

    def insert(self, text: str, token_id: int) -> None:
        node = self
        for ch in text:
            node = node.children.setdefault(ch, _TrieNode())
        node.token_ids.append(token_id)


@dataclass
class _StateTable:
    mask: torch.Tensor  # (V,) bool: tokens allowed in this state
    ids: torch.Tensor  # (n,) long: the allowed token ids, ascending
    next_state: dict[int, State]  # allowed token id -> state after it


@dataclass
class TokenConstraint:
    """`RecordGrammar` over a tokenizer's vocabulary, with per-state tables built lazily.

    `vocab[i]` is the exact text token i adds when decoded after other tokens; special
    tokens and tokens that decode to partial UTF-8 ("\\ufffd") are never allowed. A state no
    token can continue (END, or a character no token spells) allows only `fallback_token`
    (the tokenizer's eos: it decodes to nothing) and leads to END, so masked logits always
    keep one finite entry; a record cut that way fails to parse and is counted as invalid.
    """

    grammar: RecordGrammar
    vocab: list[str]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fallback_token: int = 0
    _trie: _TrieNode = field(default_factory=lambda: _TrieNode(), repr=False)
    _tables: dict[State, _StateTable] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        grammar: RecordGrammar,
        tokenizer: PreTrainedTokenizerBase,
        vocab_size: int,
        device: torch.device | str = "cpu",
    ) -> TokenConstraint:
        eos = tokenizer.eos_token_id
        return cls(
            grammar,
            token_texts(tokenizer, vocab_size),
            torch.device(device),
            fallback_token=eos if eos is not None else 0,
        )

    def __post_init__(self) -> None:
        for token_id, text in enumerate(self.vocab):
            if text:
                self._trie.insert(text, token_id)

    def start_states(self, n: int) -> list[State]:
        return [self.grammar.start()] * n

    def table(self, state: State) -> _StateTable:
        """The allowed tokens of `state` and where each leads (computed once, then cached)."""
        found = self._tables.get(state)
        if found is not None:
            return found
        # Walk the vocabulary trie and the automaton together: a subtree is entered only
        # while its prefix is accepted, so the cost follows the accepted prefixes, not V.
        next_state: dict[int, State] = {}
        step = self.grammar.step
        stack: list[tuple[_TrieNode, State]] = [(self._trie, state)]
        while stack:
            node, current = stack.pop()
            if current == END:
                continue  # nothing may follow the end of the record
            for ch, child in node.children.items():
                after = step(current, ch)
                if after is None:
                    continue
                for token_id in child.token_ids:
                    next_state[token_id] = after
                if child.children:
                    stack.append((child, after))
        if not next_state:
            next_state[self.fallback_token] = END
        ids = torch.tensor(sorted(next_state), dtype=torch.long)
        mask = torch.zeros(len(self.vocab), dtype=torch.bool)
        mask[ids] = True
        table = _StateTable(mask.to(self.device), ids.to(self.device), next_state)
        self._tables[state] = table
        return table

    def allowed(self, states: list[State]) -> torch.Tensor:
        """(B, V) bool mask, row b = tokens allowed in states[b]."""
        return torch.stack([self.table(s).mask for s in states])

    def candidates(self, states: list[State]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (U,), allowed (B, U)): the ascending union of the tokens any of `states`
        allows, and row b's mask over it (True where states[b] allows ids[u]). A step that
        scores only these U tokens samples exactly what the (B, V) `allowed` mask admits."""
        tables = [self.table(s) for s in states]
        distinct = {id(t): t for t in tables}
        if len(distinct) == 1:
            ids = tables[0].ids
        else:
            ids = torch.unique(torch.cat([t.ids for t in distinct.values()]))  # sorted
        return ids, torch.stack([t.mask for t in tables]).index_select(1, ids)

    def advance(self, states: list[State], tokens: list[int]) -> list[State]:
        """The states after each row's sampled (allowed) token."""
        return [self.table(s).next_state[t] for s, t in zip(states, tokens, strict=True)]


def token_texts(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> list[str]:
    """The text each token id adds when it follows other text ("" for special/partial ones).

    Decoding a token alone drops a leading space in SentencePiece tokenizers, so each token is
    decoded after an anchor token and the anchor's text is cut off.
    """
    anchor = tokenizer.encode("a", add_special_tokens=False)[:1]
    base = tokenizer.decode(anchor)
    special = set(tokenizer.all_special_ids)
    decoded = tokenizer.batch_decode([anchor + [i] for i in range(vocab_size)])
    texts = []
    for token_id, text in enumerate(decoded):
        piece = text[len(base) :] if text.startswith(base) else ""
        ok = token_id not in special and token_id < len(tokenizer) and "\ufffd" not in piece
        texts.append(piece if ok else "")
    return texts
