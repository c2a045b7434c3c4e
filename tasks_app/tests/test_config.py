import pytest

from tasks_app.config import DEFAULT_CONFIG, FAILURE_TYPES, InputError, merge_config, validate_config_changes


def test_defaults_match_the_seed():
    assert merge_config(None, None) == {
        "auto_deploy": False,
        "trigger_on": ["timeout", "element_not_found", "navigation_error"],
        "max_attempts": 3,
        "validation_required": True,
    }


def test_given_keys_replace_only_those_keys():
    current = merge_config(None, {"auto_deploy": True, "max_attempts": 5})
    updated = merge_config(current, {"trigger_on": ["captcha_detected", "timeout"]})
    assert updated == {**DEFAULT_CONFIG, "auto_deploy": True, "max_attempts": 5, "trigger_on": ["timeout", "captcha_detected"]}


def test_all_five_failure_types_are_accepted():
    assert validate_config_changes({"trigger_on": list(FAILURE_TYPES)})["trigger_on"] == list(FAILURE_TYPES)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"autodeploy": True}, "self_healing_config.autodeploy", "unknown key"),
        ({"auto_deploy": "yes"}, "self_healing_config.auto_deploy", "true or false"),
        ({"validation_required": 1}, "self_healing_config.validation_required", "true or false"),
        ({"max_attempts": 0}, "self_healing_config.max_attempts", "between 1 and 10"),
        ({"max_attempts": 11}, "self_healing_config.max_attempts", "between 1 and 10"),
        ({"max_attempts": 2.5}, "self_healing_config.max_attempts", "integer"),
        ({"max_attempts": True}, "self_healing_config.max_attempts", "integer"),
        ({"trigger_on": "timeout"}, "self_healing_config.trigger_on", "list"),
        ({"trigger_on": ["timeout", "script_error"]}, "self_healing_config.trigger_on", "script_error"),
        ({"trigger_on": [1]}, "self_healing_config.trigger_on", "list"),
    ],
)
def test_bad_config_is_refused_naming_the_field(changes, field, fragment):
    with pytest.raises(InputError) as caught:
        validate_config_changes(changes)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_config_must_be_an_object():
    with pytest.raises(InputError) as caught:
        validate_config_changes(["auto_deploy"])
    assert caught.value.field == "self_healing_config"
