"""Load through the local gateway at a reduced size: real clients, real process, exactly once.

The harness is ``tests/load_support.py``; ``bench/load.py`` runs it at full size with figures.
"""

from __future__ import annotations

from tests.e2e_support import e2e_database
from tests.load_support import LoadConfig, run_load

SMALL = LoadConfig(clients=60, messages=120, rooms=6, timeout=110)


def test_every_chat_message_reaches_its_whole_room_exactly_once(tmp_path):
    with e2e_database(tmp_path) as database_url:
        result = run_load(SMALL, database_url)

    assert not result["timed_out"], result
    connects = result["connects"]
    assert connects["accepted"] == SMALL.clients, connects
    assert connects["sessions_connected"] == SMALL.clients, connects
    assert result["sent"] == result["acked"] == SMALL.messages
    # Client n is in room n % rooms and sends message j when n == j % clients: every room gets
    # the same share of messages and of clients.
    assert result["expected_deliveries"] == SMALL.messages * SMALL.clients // SMALL.rooms
    assert result["delivered"] == result["expected_deliveries"]
    assert (result["lost"], result["duplicated"], result["misrouted"]) == (0, 0, 0)
    assert result["ack_mismatches"] == 0, "an ack counted fewer recipients than the room has"
    assert result["error_replies"] == result["dropped_sockets"] == 0, result["samples"]
    assert result["handler_5xx"] == result["gateway_errors"] == 0, result["samples"]
    assert result["gateway_exit_code"] == 0
    assert result["ok"]
