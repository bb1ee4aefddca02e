"""Property tests: arbitrary text gives a value or a typed error, never another exception."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmhe.annotations.parsing import (
    CellError,
    format_aus,
    format_coding_date,
    parse_aus,
    parse_clip_filename,
    parse_coding_date,
    parse_kind,
    subject_key,
)
from mmhe.io.frame_names import FrameName, FrameNameError, parse_frame_name

frame_alphabet = st.text(alphabet="0123456789-. tifTIF_:x", max_size=40)
any_text = st.one_of(st.text(max_size=60), frame_alphabet)


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_frame_name_parser_returns_value_or_typed_error(text):
    try:
        parsed = parse_frame_name(text)
    except FrameNameError as exc:
        assert text in str(exc) or repr(text) in str(exc)
    else:
        assert isinstance(parsed, FrameName)
        assert 0 <= parsed.seconds_of_day < 86400 + 1


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
    st.one_of(st.none(), st.integers(0, 999)),
)
def test_frame_names_round_trip(hour, minute, second, ms, counter):
    name = FrameName(hour, minute, second, ms, counter)
    assert parse_frame_name(name.coding_name()) == name
    full = FrameName(
        hour, minute, second, ms, counter if counter is not None else 5, 112, dt.date(2023, 7, 21)
    )
    assert parse_frame_name(full.file_name()) == full


def test_frame_name_shapes():
    assert parse_frame_name("2023-07-21-16-45-38-257-410-112.tif") == FrameName(
        16, 45, 38, 257, 410, 112, dt.date(2023, 7, 21)
    )
    assert parse_frame_name(" 11-05-52-025-446 ").counter == 446
    assert parse_frame_name("15-10-22-548").counter is None
    for bad in ("", "11-05-52", "25-00-00-000", "11-05-52-025-1446", "a-b-c-d", "11-05-52-25"):
        with pytest.raises(FrameNameError):
            parse_frame_name(bad)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet="AU0123456789,， ;+LRx", max_size=30),
        st.none(),
        st.floats(allow_nan=True),
        st.integers(),
    )
)
def test_au_parser_never_raises(value):
    numbers, bad = parse_aus(value)
    assert all(isinstance(n, int) and n > 0 for n in numbers)
    assert list(numbers) == sorted(set(numbers))
    assert all(isinstance(b, str) for b in bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 99), min_size=1, max_size=6, unique=True))
def test_au_lists_round_trip(numbers):
    assert parse_aus(format_aus(numbers)) == (tuple(sorted(numbers)), [])
    assert parse_aus("，".join(f"AU{n}" for n in numbers)) == (tuple(sorted(numbers)), [])


def test_au_spellings():
    assert parse_aus("AU4, AU7") == ((4, 7), [])
    assert parse_aus("AU4,AU7") == ((4, 7), [])
    assert parse_aus("AU4，AU7") == ((4, 7), [])
    assert parse_aus("AU 12 , R14, AU12C") == ((12, 14), [])
    assert parse_aus("4+7") == ((4, 7), [])
    assert parse_aus("AU4, smile") == ((4,), ["SMILE"])


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40), st.text(alphabet="0123456789年月日时分- ", max_size=30), st.none()
    )
)
def test_date_parser_returns_value_or_typed_error(text):
    try:
        value = parse_coding_date(text)
    except CellError as exc:
        assert exc.code in {"missing_date", "bad_date"}
    else:
        assert isinstance(value, dt.datetime)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)))
def test_chinese_dates_round_trip(when):
    when = when.replace(second=0, microsecond=0)
    assert parse_coding_date(format_coding_date(when)) == when


def test_chinese_date_examples():
    assert parse_coding_date("2024年05月15日-19时54分") == dt.datetime(2024, 5, 15, 19, 54)
    assert parse_coding_date("2024年5月3日") == dt.datetime(2024, 5, 3)
    with pytest.raises(CellError):
        parse_coding_date("2024年13月45日-19时54分")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_filename_and_kind_parsers_never_raise_untyped(text):
    for parser in (parse_clip_filename, parse_kind):
        try:
            parser(text)
        except CellError:
            pass
    assert isinstance(subject_key(text), str)


def test_clip_filename_fields():
    clip = parse_clip_filename("angry_1_146_wangxiaomin_20230718.avi")
    assert (clip.emotion, clip.clip_index, clip.marker, clip.subject, clip.session_date) == (
        "anger",
        1,
        146,
        "wangxiaomin",
        dt.date(2023, 7, 18),
    )
    assert parse_clip_filename("sad_2_109_liyan_20230802. avi").emotion == "sadness"
