"""A terminal's request id (and an operator's names) with a trailing newline.

Request ids go into logs, the audit log and the record digest's buckets. ``re.match`` with
a ``$`` pattern accepts "abcdefgh\\n" (``$`` matches before a final newline), so an id could
end a log line early; ids and config names must match their whole text.
"""

from __future__ import annotations

import pytest

from splitface.shared import api
from splitface.shared.config_schema import check_env_name, check_name


@pytest.mark.parametrize("rid", ["abcdefgh\n", "abcdefgh\r\n", "\nabcdefgh", "abcd efgh",
                                 "abcdefg", "a" * 65])
def test_a_malformed_request_id_is_refused(rid):
    with pytest.raises(api.ApiError) as err:
        api.check_request_id(rid)
    assert err.value.code == api.BAD_REQUEST


def test_a_well_formed_request_id_passes():
    assert api.check_request_id("abc-DEF_0123") == "abc-DEF_0123"


def test_config_names_match_their_whole_text():
    assert check_name("edge-1") == "" and check_name("edge-1\n") != ""
    assert check_env_name("SPLITFACE_PIN") == "" and check_env_name("SPLITFACE_PIN\n") != ""
