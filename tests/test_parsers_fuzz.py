"""Property-based fuzzing of every parser a user's text reaches: any input either parses or
raises the project's `UserError`, never anything else, and always returns promptly.

The deadline is the "never runs unbounded" check: before the physical bounds on specs, an arch
string with `r100000000` took 50 s and `--phi 0-1000000000` never returned.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import archs

import space
from search.arguments import parse_phis
from search.cli import main
from space import UserError

FAST = settings(max_examples=300, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

_NUMBERS = st.one_of(st.integers(-10, 10**12).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.sampled_from(["", "nan", "inf", "-inf", "1e400", "0x10", "1_0", "٣"]))


def _arch_tokens() -> st.SearchStrategy[str]:
    """Near-grammatical arch strings: real keys with arbitrary values and separators."""
    key = st.sampled_from(["mb", "r", "k", "s", "e", "c", "se", "noskip", "i", "stem", "head",
                           "res", "cls", "drop", "dc", "in", "x", ""])
    token = st.tuples(key, _NUMBERS).map("".join)
    block = st.lists(token, min_size=1, max_size=8).map(lambda t: "mb_" + "_".join(t))
    item = st.one_of(block, token)
    return st.lists(item, min_size=1, max_size=6).map("-".join)


def _mutations(valid: str) -> st.SearchStrategy[str]:
    """A valid string with one span replaced by junk or an extreme number."""
    junk = st.one_of(st.text(max_size=6), _NUMBERS)
    return st.tuples(st.integers(0, len(valid)), st.integers(0, 6), junk).map(
        lambda t: valid[:t[0]] + t[2] + valid[t[0] + t[1]:])


@FAST
@given(st.one_of(st.text(max_size=80), _arch_tokens(),
                 archs().map(space.encode).flatmap(_mutations)))
def test_arch_strings_parse_or_raise_a_user_error(text):
    try:
        spec = space.decode(text)
    except UserError:
        return
    assert space.decode(space.encode(spec)) == spec
    space.cost(spec)  # bounded specs cost promptly


@FAST
@given(st.one_of(st.text(max_size=40),
                 st.lists(_NUMBERS, min_size=1, max_size=4).map(",".join)))
def test_coefficient_strings_parse_or_raise_a_user_error(text):
    try:
        coeffs = space.parse_coefficients(text, tolerance=0.25)
    except UserError:
        return
    assert min(coeffs.as_tuple()) >= 1 and math.isfinite(coeffs.product)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(),
              st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=10)


def _coefficient_records() -> st.SearchStrategy[object]:
    """Mostly well-formed files with one field broken, plus arbitrary JSON."""
    fields = {"format": st.one_of(st.just("effsearch.coefficients"), _JSON),
              "version": st.one_of(st.sampled_from([1, 2]), _JSON),
              "alpha": st.one_of(st.floats(0.5, 3), _JSON), "beta": st.floats(1, 2),
              "gamma": st.floats(1, 2), "target": st.one_of(st.just(2.0), _JSON),
              "baseline": st.one_of(st.just("mb_r1_k3_s1_c8-res8"), _arch_tokens(), _JSON),
              "resolution_multiple": st.one_of(st.integers(-2, 16), _JSON),
              "channel_divisor": st.one_of(st.integers(-2, 16), _JSON),
              "provenance": st.one_of(st.just({}), _JSON)}
    return st.one_of(_JSON, st.fixed_dictionaries({}, optional=fields))


@FAST
@given(st.one_of(_coefficient_records().map(json.dumps), st.binary(max_size=64)))
def test_coefficient_files_load_or_raise_a_user_error(tmp_path, content):
    path = tmp_path / "c.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        coeffs = space.load_coefficients(path)
    except UserError:
        return
    if coeffs.baseline is not None:
        space.scale(None, coeffs, 1)  # a loaded family scales or raises a user error
    # What loads, saves and loads back as the same family.
    space.save_coefficients(coeffs, tmp_path / "again.json")
    assert space.load_coefficients(tmp_path / "again.json") == coeffs


_PHIS = st.one_of(st.text(max_size=20),
                  st.tuples(_NUMBERS, st.sampled_from(["-", ",", "--", "-,"]), _NUMBERS).map(
                      "".join),
                  st.lists(_NUMBERS, min_size=1, max_size=5).map(",".join))


@FAST
@given(_PHIS)
def test_phi_ranges_parse_or_raise_a_user_error(text):
    try:
        phis = parse_phis(text)
    except UserError:
        return
    assert 1 <= len(phis) <= 101 and all(math.isfinite(p) for p in phis)


@settings(max_examples=60, deadline=5000)
@given(_PHIS, st.sampled_from(["1.2,1.1,1.15", "2,1,1", "1,1.4142,1", "1000,1,1"]))
def test_scale_command_answers_every_phi_text_with_0_or_2(text, coeffs):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["scale", f"--phi={text}", f"--coeffs={coeffs}", "--json"])
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    else:
        assert json.loads(out.getvalue())["family"]
