"""Schema-constrained decoding: the record grammar, its token tables, and decoding under it."""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest
import torch

from synthloom.methods.difflm.decode import decode_records
from synthloom.methods.difflm.grammar import END, RecordGrammar, TokenConstraint, token_texts
from synthloom.models.injection import Injection
from synthloom.models.tiny import tiny_causal_lm
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema
from synthloom.serialize import parse_record, serialize_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_causal_lm(seed=3)


def _schema_with_text() -> TableSchema:
    return TableSchema(
        columns=(
            ColumnSchema("x", ColumnKind.NUMERIC, minimum=-5.0, maximum=250.0),
            ColumnSchema(
                "k", ColumnKind.NUMERIC, integer=True, nullable=True, minimum=0, maximum=9
            ),
            ColumnSchema("c", ColumnKind.CATEGORICAL, categories=("a", "ab", 'say "hi"')),
            ColumnSchema("t", ColumnKind.TEXT, nullable=True),
            ColumnSchema("b", ColumnKind.BOOLEAN, categories=("False", "True")),
        ),
        target=None,
        task=None,
    )


@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_grammar_accepts_every_serialized_training_row(mixed_table, mixed_schema, fmt):
    grammar = RecordGrammar.for_schema(mixed_schema, fmt)
    texts = serialize_table(mixed_table, mixed_schema, fmt)
    assert all(grammar.accepts(t) for t in texts)


@pytest.mark.parametrize(
    "text, ok",
    [
        ('{"x": 1.5, "k": 3, "c": "ab", "t": "free text", "b": true}', True),
        ('{"x": -0.25, "k": null, "c": "say \\"hi\\"", "t": null, "b": false}', True),
        ('{"x": 1e-05, "k": 0, "c": "a", "t": "", "b": true}', True),
        ('{"x": 1.5, "k": 3, "c": "abc", "t": "x", "b": true}', False),  # unknown category
        ('{"x": 1.5, "k": 3.5, "c": "a", "t": "x", "b": true}', False),  # fraction in int column
        ('{"x": 01, "k": 3, "c": "a", "t": "x", "b": true}', False),  # leading zero
        ('{"x": 12345, "k": 3, "c": "a", "t": "x", "b": true}', False),  # too many digits
        ('{"x": 276, "k": 3, "c": "a", "t": "x", "b": true}', False),  # above 250 + 10% span
        ('{"x": 275.5, "k": 3, "c": "a", "t": "x", "b": true}', True),  # int part 275 in
        ('{"x": -31, "k": 3, "c": "a", "t": "x", "b": true}', False),  # below -5 - 10% span
        ('{"x": 1, "k": 11, "c": "a", "t": "x", "b": true}', False),  # k above 9 + 0.9
        ('{"x": null, "k": 3, "c": "a", "t": "x", "b": true}', False),  # x is not nullable
        ('{"k": 3, "x": 1, "c": "a", "t": "x", "b": true}', False),  # keys out of order
        ('{"x": 1, "k": 3, "c": "a", "t": "x"}', False),  # missing column
        ('{"x": 1, "k": 3, "c": "a", "t": "x", "b": true}}', False),  # trailing text
        ('{"x": 1, "k": 3, "c": "a", "t": "line\\nbreak", "b": true}', False),  # escapes
    ],
)
def test_grammar_decides_membership(text, ok):
    assert RecordGrammar.for_schema(_schema_with_text(), "json").accepts(text) is ok


def _in_widened_range(text: str, lo: float, hi: float, widening: float) -> bool:
    """The documented rule: the integer part of the magnitude within the floors of the
    widened bounds of its sign."""
    pad = (hi - lo) * widening
    lo, hi = lo - pad, hi + pad
    magnitude = int(text.lstrip("-").split(".")[0])
    if text.startswith("-"):
        return lo < 0 and math.floor(max(-hi, 0)) <= magnitude <= math.floor(-lo)
    return hi >= 0 and math.floor(max(lo, 0)) <= magnitude <= math.floor(hi)


def test_numbers_are_bounded_by_the_widened_training_range():
    rng = random.Random(0)
    for _ in range(300):
        lo = rng.choice([-1, 1]) * rng.choice([0, 0.5, 3, 18, 250, 4000.5])
        hi = lo + rng.choice([0.2, 1, 50, 700, 12000])
        widening = rng.choice([0.0, 0.1, 0.5])
        column = ColumnSchema("v", ColumnKind.NUMERIC, minimum=lo, maximum=hi)
        grammar = RecordGrammar.for_schema(TableSchema((column,)), "compact", widening=widening)
        for _ in range(20):
            value = rng.choice([0, rng.uniform(lo - hi, 2 * hi - lo), rng.uniform(lo, hi)])
            text = rng.choice([f"{value:.0f}", f"{value:.2f}"]).replace("-0.00", "-0.01")
            text = "0" if text in ("-0", "-0.00") else text
            assert grammar.accepts(f"[{text}]") is _in_widened_range(text, lo, hi, widening), (
                lo,
                hi,
                widening,
                text,
            )


def test_every_reachable_number_state_can_still_finish():
    """No dead ends: from each state a random walk reaches END (so masked decoding never
    runs out of allowed tokens inside a number)."""
    rng = random.Random(1)
    alphabet = "0123456789.-e]n"
    for lo, hi in [(18, 68), (-300, -100), (0, 11140), (-5, 5), (950, 1050), (0.001, 0.02)]:
        column = ColumnSchema("v", ColumnKind.NUMERIC, minimum=lo, maximum=hi)
        grammar = RecordGrammar.for_schema(TableSchema((column,)), "compact")
        for _ in range(200):
            state, text = grammar.step(grammar.start(), "["), "["
            while state != END:
                options = [c for c in alphabet if grammar.step(state, c) is not None]
                assert options, (lo, hi, text)
                # prefer digits to explore long prefixes, then close
                ch = rng.choice(options) if rng.random() < 0.8 or "]" not in options else "]"
                state, text = grammar.step(state, ch), text + ch
                assert len(text) < 40, text
            value = float(text[1:-1])
            pad = (hi - lo) * 0.1
            assert lo - pad - 1 < value < hi + pad + 1, (lo, hi, text)


def test_grammar_agrees_with_the_strict_parser_on_accepted_records():
    schema = _schema_with_text()
    text = '{"x": 250.125, "k": 9, "c": "say \\"hi\\"", "t": "ok", "b": false}'
    assert RecordGrammar.for_schema(schema, "json").accepts(text)
    parsed = parse_record(text, schema, "json")
    assert parsed.ok and parsed.record["c"] == 'say "hi"' and parsed.record["x"] == 250.125


def test_token_tables_follow_real_tokenizations(tiny, mixed_table, mixed_schema):
    """Walking the tokens of a real record through the tables reaches END, token by token."""
    _, tok = tiny
    constraint = TokenConstraint.build(
        RecordGrammar.for_schema(mixed_schema, "json"), tok, len(tok)
    )
    for text in serialize_table(mixed_table.head(5), mixed_schema, "json"):
        state = constraint.grammar.start()
        for token_id in tok.encode(text, add_special_tokens=False):
            table = constraint.table(state)
            assert table.mask[token_id], (text, tok.decode([token_id]))
            state = table.next_state[token_id]
        assert state == END


def test_token_texts_keep_leading_spaces_and_blank_specials(tiny):
    _, tok = tiny
    texts = token_texts(tok, len(tok))
    assert texts[tok.eos_token_id] == "" and texts[tok.bos_token_id] == ""
    spaced = [i for i in tok.encode(" the quick", add_special_tokens=False)]
    assert "".join(texts[i] for i in spaced) == " the quick"


def test_end_state_allows_only_the_fallback_token(tiny, mixed_schema):
    _, tok = tiny
    constraint = TokenConstraint.build(
        RecordGrammar.for_schema(mixed_schema, "json"), tok, len(tok)
    )
    table = constraint.table(END)
    assert table.mask.sum() == 1 and table.mask[tok.eos_token_id]


@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_constrained_decoding_of_a_random_model_writes_only_valid_records(tiny, mixed_schema, fmt):
    """An untrained model writes garbage freely; under the grammar every finished row parses
    into the schema with known categories, and rows stop right at the closing bracket."""
    model, tok = tiny
    grammar = RecordGrammar.for_schema(mixed_schema, fmt)
    constraint = TokenConstraint.build(grammar, tok, model.config.vocab_size)
    hidden = model.config.hidden_size
    injection = Injection(
        prefix_embeds=torch.randn(12, 4, hidden, generator=torch.Generator().manual_seed(0))
    )
    result = decode_records(
        model,
        tok,
        injection,
        max_new_tokens=160,
        temperature=1.0,
        generator=torch.Generator().manual_seed(1),
        constraint=constraint,
        min_batch_to_compact=2,
    )
    finished = [t for t, f in zip(result.texts, result.finished.tolist(), strict=True) if f]
    assert len(finished) >= 10
    for text in finished:
        assert grammar.accepts(text), text
        parsed = parse_record(text, mixed_schema, fmt)
        assert parsed.ok, (text, parsed.error)
        assert parsed.record["home"] in {"owner", "parents", "rent"}
        assert text.endswith("}" if fmt == "json" else "]")
    # The free decoder on the same inputs writes no valid record at all.
    free = decode_records(
        model,
        tok,
        injection,
        max_new_tokens=60,
        temperature=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert not any(parse_record(t, mixed_schema, fmt).ok for t in free.texts)


def test_constrained_greedy_decoding_is_independent_of_compaction(tiny, mixed_schema):
    model, tok = tiny
    constraint = TokenConstraint.build(
        RecordGrammar.for_schema(mixed_schema, "json"), tok, model.config.vocab_size
    )
    injection = Injection(prefix_embeds=torch.randn(6, 4, model.config.hidden_size))
    runs = [
        decode_records(
            model,
            tok,
            injection,
            max_new_tokens=120,
            temperature=0.0,
            constraint=constraint,
            min_batch_to_compact=m,
        )
        for m in (1, 100)
    ]
    assert runs[0].texts == runs[1].texts
    assert runs[0].forward_passes <= runs[1].forward_passes


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_scoring_only_the_allowed_tokens_writes_the_same_records(tiny, mixed_schema, temperature):
    """The restricted output head (logits of the union of allowed tokens only) samples the
    same token as the full head for the same uniform draw, so the records are identical."""
    model, tok = tiny
    constraint = TokenConstraint.build(
        RecordGrammar.for_schema(mixed_schema, "json"), tok, model.config.vocab_size
    )
    ids, allowed = constraint.candidates(constraint.start_states(3))
    assert 2 * ids.numel() <= model.config.vocab_size  # the restricted path is taken
    assert allowed.shape == (3, ids.numel()) and bool(allowed.all())
    injection = Injection(
        prefix_embeds=torch.randn(
            10, 4, model.config.hidden_size, generator=torch.Generator().manual_seed(5)
        )
    )
    runs = {}
    for restrict in (False, True):
        profile: dict[str, float] = {}
        runs[restrict] = decode_records(
            model,
            tok,
            injection,
            max_new_tokens=120,
            temperature=temperature,
            generator=torch.Generator().manual_seed(2),
            constraint=constraint,
            restrict_vocabulary=restrict,
            profile=profile,
        )
        assert {"forward", "grammar", "sampling"} <= set(profile)
        assert ("head" in profile) == restrict
        assert all(v >= 0 for v in profile.values())
    assert runs[True].texts == runs[False].texts
    assert runs[True].finished.tolist() == runs[False].finished.tolist()


def test_candidates_union_keeps_each_rows_own_mask(tiny, mixed_schema):
    model, tok = tiny
    constraint = TokenConstraint.build(
        RecordGrammar.for_schema(mixed_schema, "json"), tok, model.config.vocab_size
    )
    start = constraint.grammar.start()
    after = constraint.advance([start], [int(constraint.table(start).ids[0])])[0]
    states = [start, after, start]
    ids, allowed = constraint.candidates(states)
    assert bool((ids[1:] > ids[:-1]).all())  # ascending, no repeats
    for row, state in enumerate(states):
        expected = constraint.table(state).mask[ids]
        assert torch.equal(allowed[row], expected)
        assert int(allowed[row].sum()) == int(constraint.table(state).mask.sum())


def test_categories_with_json_escapes_round_trip():
    schema = TableSchema(
        columns=(ColumnSchema("c", ColumnKind.CATEGORICAL, categories=('a"b', "é", "a\\b")),),
        target=None,
        task=None,
    )
    grammar = RecordGrammar.for_schema(schema, "json")
    frame = pd.DataFrame({"c": ['a"b', "é", "a\\b"]})
    for text in serialize_table(frame, schema, "json"):
        assert grammar.accepts(text), text
        assert json.loads(text)["c"] in {'a"b', "é", "a\\b"}


def test_a_condition_schema_admits_only_the_forced_value() -> None:
    from synthloom.serialize import condition_schema

    base = RecordGrammar.for_schema(_schema_with_text(), "compact")
    record = '[1.5, null, "ab", null, {b}]'
    assert base.accepts(record.format(b="true")) and base.accepts(record.format(b="false"))
    forced = RecordGrammar.for_schema(condition_schema(_schema_with_text(), "b", "True"), "compact")
    assert forced.accepts(record.format(b="true")) and not forced.accepts(record.format(b="false"))
    only_a = RecordGrammar.for_schema(condition_schema(_schema_with_text(), "c", "a"), "compact")
    assert only_a.accepts('[1.5, null, "a", null, true]')
    assert not only_a.accepts('[1.5, null, "ab", null, true]')
    nullable = condition_schema(_schema_with_text(), "k", "3").column("k")
    assert nullable.nullable is False  # a forced slot is never null
