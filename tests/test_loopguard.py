"""A list answer stops at its first repeated row: the scanner on partial JSON, and the real model."""
import json

import pytest
from pydantic import BaseModel

from summarizer.backends.loopguard import cut_at_repeat
from summarizer.drafts import ExtractionContext

ROWS = '{"actors": [["Korsk", "state", null, null], ["Elena Marsh", "person", "Valdoria", "Marsh"]'


def test_no_cut_while_no_row_repeats():
    assert cut_at_repeat(ROWS) is None
    assert cut_at_repeat(ROWS + "]}") is None
    # a name that repeats in a later field, or a row that is still being written, is no repeat
    assert cut_at_repeat(ROWS + ', ["UNHCR", "organization", "Korsk", "Korsk"]') is None
    assert cut_at_repeat(ROWS + ', ["Kors') is None
    assert cut_at_repeat(ROWS + ', ["Korsk') is None


def test_a_repeated_first_value_ends_the_list_before_that_row():
    cut = cut_at_repeat(ROWS + ', ["Korsk"')
    assert cut == ROWS + "]}"
    assert json.loads(cut) == {"actors": [["Korsk", "state", None, None],
                                          ["Elena Marsh", "person", "Valdoria", "Marsh"]]}
    # whatever follows the repeated value does not matter: the cut is the same
    assert cut_at_repeat(ROWS + ', ["Korsk", "state", null') == cut
    # the second row repeating the first one leaves one row
    assert json.loads(cut_at_repeat('{"actors": [["A", "state", null, null], ["A"')) == {"actors": [["A", "state", None, None]]}


def test_strings_with_escapes_brackets_and_non_ascii():
    head = '{"a": [["x \\"[q]\\" ]", 1], ["Łódź, {city}", 2]'
    assert cut_at_repeat(head) is None
    assert json.loads(cut_at_repeat(head + ', ["Łódź, {city}", 3]]}')) == {"a": [['x "[q]" ]', 1], ["Łódź, {city}", 2]]}
    assert json.loads(cut_at_repeat(head + ', ["x \\"[q]\\" ]"')) == {"a": [['x "[q]" ]', 1], ["Łódź, {city}", 2]]}


def test_only_rows_of_the_same_list_are_compared():
    # two lists in one answer: a value repeated across lists is no repeat
    text = '{"a": [["x", 1]], "b": [["x", 2], ["y", 3]'
    assert cut_at_repeat(text) is None
    assert json.loads(cut_at_repeat(text + ', ["y", 4]')) == {"a": [["x", 1]], "b": [["x", 2], ["y", 3]]}
    # a list of plain strings is not a list of rows
    assert cut_at_repeat('{"a": ["x", "x", "x"') is None


class Cities(BaseModel):
    rows: list[tuple[str, int]]


@pytest.mark.slow
def test_the_embedded_model_stops_at_a_repeated_row():
    from summarizer.backends.local import LocalBackend

    backend = LocalBackend()
    request = {"role": "user", "content": "Copy these rows as JSON, every row in order, as [city, number]: "
                                          "Paris 1; Rome 2; Paris 3; Oslo 4; Paris 5; Rome 6."}
    obj, stats = backend.structured([request], Cities, ExtractionContext(""), max_retries=0)
    # the model copies the rows; it is stopped when it starts the third, a repeat of the first city
    assert [list(r) for r in obj.rows] == [["Paris", 1], ["Rome", 2]]
    assert json.loads(stats.raw[-1]) == {"rows": [["Paris", 1], ["Rome", 2]]}
    # generation really stopped there: far fewer tokens than the six rows would take
    assert stats.completion_tokens < len(backend._tokenize('{"rows": [["Paris", 1], ["Rome", 2], ["Paris", 3], '
                                                           '["Oslo", 4], ["Paris", 5], ["Rome", 6]]}'))
    # answers with the stop are cached apart from answers decoded without it
    tool = {"type": "function", "function": {"name": "Cities", "parameters": Cities.model_json_schema()}}
    assert backend.cache_identity({"tools": [tool]})["stop"] == "repeated-row"


def test_the_stopping_criterion_reads_the_decoded_tokens():
    from summarizer.backends.loopguard import RepeatGuard

    pieces = ['{"', 'rows', '":', ' [["', 'Paris', '",', ' ', '1', '],', ' ["', 'Rome', '",', ' 2', '],', ' ["',
              'Par', 'is', '",', ' 3']

    class Vocab:  # token id i stands for pieces[i]
        def detokenize(self, tokens):
            return "".join(pieces[t] for t in tokens).encode()

    prompt = [900, 901, 902]
    guard = RepeatGuard(Vocab(), len(prompt))
    ids = prompt + list(range(len(pieces)))
    stops = [guard(ids[:k], None) for k in range(len(prompt) + 1, len(ids) + 1)]
    # it fires once the repeated first value's closing quote has been decoded (token '",' at index 17)
    assert stops.index(True) == 17 and all(stops[17:])
    assert json.loads(guard.cut) == {"rows": [["Paris", 1], ["Rome", 2]]}
