"""The shipped test client and outbox under unittest: Django's TestCase and TransactionTestCase."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TransactionTestCase, override_settings

from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.testing import (
    WebSocketTestCase,
    WebSocketTestMixin,
    create_api_gateway,
    current_outbox,
)


@override_settings(ROOT_URLCONF="tests.testing_urls")
class RoomTests(WebSocketTestCase):
    @classmethod
    def setUpTestData(cls):
        cls.gateway = create_api_gateway()
        cls.alice = get_user_model().objects.create_user(username="alice")
        cls.bob = get_user_model().objects.create_user(username="bob")

    def setUp(self):
        super().setUp()
        self.a = self.websocket_client(self.gateway)
        self.b = self.websocket_client(self.gateway)
        self.a.force_login(self.alice)
        self.b.force_login(self.bob)
        self.assertEqual(self.a.connect(channel="general").status_code, 200)
        self.assertEqual(self.b.connect(channel="general").status_code, 200)

    def test_fan_out_and_single_send_are_in_the_outbox(self):
        self.a.send({"action": "whisper", "text": "psst"})
        response = self.a.send({"action": "say", "text": "hi"})

        self.assertEqual(response.json(), {"delivered": 2, "gone": 0})
        self.assertEqual(self.a.received, [{"whisper": "psst"}, {"said": "hi", "by": "alice"}])
        self.assertEqual(self.b.received, [{"said": "hi", "by": "alice"}])
        self.assertEqual(len(self.websocket_outbox), 3)

    def test_each_test_starts_with_an_empty_outbox(self):
        # Runs after or before the test above: neither sees the other's sends.
        self.assertEqual(list(self.websocket_outbox), [])
        self.assertIs(current_outbox(), self.websocket_outbox)

    def test_a_gone_connection(self):
        self.b.disconnect()

        self.assertEqual(self.a.send({"action": "say", "text": "hi"}).json()["delivered"], 1)
        self.assertEqual(self.b.received, [])
        self.assertEqual([m.connection_id for m in self.websocket_outbox.gone], [])
        # b's session was marked disconnected by $disconnect: the fan-out skipped it.
        self.assertFalse(WebSocketSession.objects.get(connection_id=self.b.connection_id).connected)


@override_settings(ROOT_URLCONF="tests.testing_urls")
class CommittedRoomTests(WebSocketTestMixin, TransactionTestCase):
    """The mixin on a TransactionTestCase: the events' own transactions really commit."""

    def test_connect_and_send(self):
        gateway = create_api_gateway()
        ws = self.websocket_client(gateway, websocket_path="/open/{route}")
        self.assertEqual(ws.connect(channel="general").status_code, 200)

        ws.send({"action": "whisper", "text": "committed"})

        self.assertEqual(ws.received, [{"whisper": "committed"}])
