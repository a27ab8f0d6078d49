"""Argument checks, all with Keras' wording: "Invalid value for argument
`x`: expected ... Received: x=...".

Plain Python, no Keras or backend: the layer, the masks, the models, the
data pipeline and the command line's runs all check their arguments here.
"""

import math
import numbers


def invalid_argument(name, expected, value):
    """The `ValueError` for argument `name` holding `value`.

    Args:
        name: the argument's name, as the caller wrote it.
        expected: what a valid value is, e.g. "a positive integer".
        value: the value received.

    Returns:
        A `ValueError` to raise.
    """
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_positive_int(name, value, allow_none=False):
    """Returns `value` as an int >= 1 (or None, if `allow_none`)."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise invalid_argument(name, expected, value)
    return int(value)


def validate_non_negative_int(name, value):
    """Returns `value` as an int >= 0."""
    if not _is_int(value) or value < 0:
        raise invalid_argument(name, "an integer >= 0", value)
    return int(value)


def validate_optional_int(name, value):
    """Returns `value` as an int, or None (a seed)."""
    if value is None:
        return None
    if not _is_int(value):
        raise invalid_argument(name, "an int or None", value)
    return int(value)


def validate_ratio(name, value, include_one=True):
    """Returns `value` as a float in [0, 1] ([0, 1) without `include_one`)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
        or (value == 1.0 and not include_one)
    ):
        upper = "1" if include_one else "1 (excluded)"
        raise invalid_argument(name, f"a float between 0 and {upper}", value)
    return float(value)


def validate_choice(name, value, choices):
    """Returns `value` if it is one of `choices`."""
    if value not in choices:
        raise invalid_argument(name, f"one of {list(choices)}", value)
    return value


def validate_bool(name, value):
    """Returns `value` if it is True or False."""
    if not isinstance(value, bool):
        raise invalid_argument(name, "True or False", value)
    return value
