"""One error body for every API failure: ``{"error": {"status", "code", "message", "fields"}}``."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.crypto import redact


def _first_message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in ("non_field_errors", "detail") else f"{key}: {inner}"
    return str(detail)


def error_body(status_code: int, code: str, message: str, fields: dict | None = None) -> dict:
    body = {"status": status_code, "code": code, "message": redact(message)}
    if fields:
        body["fields"] = fields
    return {"error": body}


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = getattr(exc, "default_code", "error")
    fields = None
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        if isinstance(detail, dict):
            fields = {k: v for k, v in detail.items() if k != "non_field_errors"} or None
        message = _first_message(detail)
    elif isinstance(detail, dict) and "detail" in detail:
        message = str(detail["detail"])
        code = getattr(detail["detail"], "code", code)
    else:
        message = _first_message(detail)
    response.data = error_body(response.status_code, str(code), message, fields)
    return response


def conflict(message: str) -> Response:
    return Response(error_body(status.HTTP_409_CONFLICT, "conflict", message), status=status.HTTP_409_CONFLICT)
