"""Serverless Django WebSockets: AWS API Gateway WebSocket APIs served by Django views."""

__version__ = "0.1.0"
