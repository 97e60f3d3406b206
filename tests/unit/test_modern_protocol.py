"""modern_protocol: ambiguous JSON keys found at any depth, and the refusal they get."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.supervisor.modern_protocol import ambiguous_keys, refusal

# A JSON tree whose objects are lists of pairs, so duplicates can be written down.
KEYS = st.sampled_from(["id", "ID", "Id", "name", "Name", "method", "path", "PATH", "ß", "ss", "\u212a", "k", "é", "É"])
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: ("array", xs))
    | st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda ps: ("object", ps)),
    max_leaves=20)


def dump(tree) -> str:
    if isinstance(tree, tuple) and tree[0] == "array":
        return "[" + ",".join(dump(x) for x in tree[1]) + "]"
    if isinstance(tree, tuple):
        return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in tree[1]) + "}"
    return json.dumps(tree)


def has_ambiguity(tree) -> bool:
    if isinstance(tree, tuple) and tree[0] == "array":
        return any(has_ambiguity(x) for x in tree[1])
    if isinstance(tree, tuple):
        folded = [k.casefold() for k, _ in tree[1]]
        return len(set(folded)) != len(folded) or any(has_ambiguity(v) for _, v in tree[1])
    return False


@given(TREES)
def test_found_exactly_when_some_object_has_two_keys_equal_but_for_case(tree):
    found = ambiguous_keys(dump(tree))
    assert (found is not None) == has_ambiguity(tree)
    if found is not None:
        assert found[0].casefold() == found[1].casefold()


def test_refusal_is_an_invalid_request_with_the_id_when_unambiguous():
    reply = json.loads(refusal(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a","Name":"b"}}'))
    assert reply["id"] == 3 and reply["error"]["code"] == -32600 and "'name' and 'Name'" in reply["error"]["message"]
    reply = json.loads(refusal(b'{"jsonrpc":"2.0","id":3,"id":4,"method":"ping"}'))
    assert reply["id"] is None and "duplicate key 'id'" in reply["error"]["message"]
    assert refusal(b'{"jsonrpc":"2.0","id":3,"method":"ping"}') is None
    assert refusal(b"not json") is None  # the transport's -32700, not ours
