"""Signals, so layers above (metrics, the example app) can observe sends without being called."""

from django.dispatch import Signal

# Sent after every single send and fan-out, with ``report`` (a sending.SendReport).
messages_sent = Signal()
