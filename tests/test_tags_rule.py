"""One rule for tags in every face (issue 16): core.models' `Tags` and `parse_tag_item`. A bare
tag (`nightly`) is a tag with an empty value, shown as its key alone and found by `tag:nightly`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.display import tags_text
from core.models import CreateRequest, parse_tag_item, parse_tags


def test_a_bare_tag_is_a_tag_with_an_empty_value():
    assert parse_tag_item("nightly") == ("nightly", "")
    assert parse_tag_item("env=prod") == ("env", "prod")
    assert parse_tag_item("url=a=b") == ("url", "a=b")  # the first '=' separates
    assert parse_tag_item("empty=") == ("empty", "")
    tags = parse_tags(["env=prod", "nightly"])
    assert tags == {"env": "prod", "nightly": ""}
    assert tags_text(tags) == "env=prod, nightly"


@pytest.mark.parametrize("bad", ["", "=v", "a,b", "a,b=1", "k" * 65, "tab\there=1"])
def test_bad_tags_are_refused_with_one_reason(bad):
    with pytest.raises(ValueError, match="tag"):
        parse_tag_item(bad)


def test_the_request_model_applies_the_same_rule():
    assert CreateRequest(project_id="p", data_dir="/d", tags={"nightly": ""}).tags == {
        "nightly": ""
    }
    for key in ("a=b", "a,b", ""):
        with pytest.raises(ValidationError, match="tags"):
            CreateRequest(project_id="p", data_dir="/d", tags={key: "v"})
