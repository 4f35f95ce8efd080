"""A section's own check names the exact key it refuses (``SettingError``), below
whatever prefix the section has where it is written."""

from __future__ import annotations

import msgspec
import pytest

from colonnade.config.sections import Section, SettingError
from colonnade.config.validation import convert
from colonnade.errors import ConfigError


class Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str


class Checked(Section, frozen=True):
    key = "checked"
    items: list[Item] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for i, item in enumerate(self.items):
            if item.name.startswith("_"):
                raise SettingError(f"items[{i}].name", f"{item.name!r} starts with '_'")


@pytest.mark.parametrize("prefix", ["checked", "locations[3].checked"])
def test_the_key_is_the_setting_below_the_prefix(prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        convert({"items": [{"name": "a"}, {"name": "_b"}]}, Checked, prefix=prefix, file="f")
    error = caught.value
    assert (error.file, error.key, error.message) == (
        "f",
        f"{prefix}.items[1].name",
        "'_b' starts with '_'",
    )


def test_a_setting_error_is_not_a_value_error() -> None:
    # msgspec turns a ValueError in __post_init__ into a ValidationError naming
    # only the struct; a SettingError must pass through it untouched.
    assert not issubclass(SettingError, ValueError | TypeError)
    assert convert({"items": [{"name": "a"}]}, Checked).items == [Item("a")]
