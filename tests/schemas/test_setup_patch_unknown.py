"""A PATCH naming an option the schema does not know is refused, even when it sends null."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from schemas.setup import apply_patch, validate_setup


@pytest.fixture
def current() -> dict[str, object]:
    options, _ = validate_setup(
        {
            "name": "s",
            "object_type": "Contact",
            "main_list": "11111111-1111-1111-1111-111111111111",
            "salesforce_connection": 1,
            "constant_contact_connection": 2,
        }
    )
    return options


@pytest.mark.parametrize(
    ("patch", "messages"),
    [
        ({"": None}, {"": ["Unknown field."]}),
        ({"no_such_option": None}, {"no_such_option": ["Unknown field."]}),
        ({"schedule": {"no_such_key": None}}, {"schedule": {"no_such_key": ["Unknown field."]}}),
    ],
)
def test_unknown_names_are_refused_even_as_null(
    current: dict[str, object], patch: dict[str, object], messages: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as raised:
        apply_patch(current, patch)
    assert raised.value.messages == messages


def test_known_names_set_to_null_still_reset_to_the_default(current: dict[str, object]) -> None:
    changed, _ = apply_patch(current, {"schedule": {"poll_minutes": 5}})
    assert changed["schedule"]["poll_minutes"] == 5
    reset, _ = apply_patch(changed, {"schedule": {"poll_minutes": None}})
    assert reset["schedule"]["poll_minutes"] == current["schedule"]["poll_minutes"]
