"""Running the library on AWS Lambda: the handler factory and its event adapter."""

from .handler import make_lambda_handler

__all__ = ("make_lambda_handler",)
