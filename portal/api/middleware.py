"""Every answer under ``/v3/`` that is an error carries the JSON error body, whoever produced it.

DRF views already answer with :func:`portal.api.errors.error_body`; this covers the rest: Django's own
404 for unknown paths, 400s from suspicious requests, bodies over the size limit (refused before the view
reads them) and unexpected exceptions, which are logged here and answered without a traceback.
"""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

from portal.api.errors import error_body
from portal.api.parsers import max_body_bytes, too_large

logger = logging.getLogger("corral.api")

API_PREFIX = "/v3/"

CODES = {400: "bad_request", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
         405: "method_not_allowed", 406: "not_acceptable", 413: "request_too_large", 415: "unsupported_media_type",
         429: "throttled", 500: "server_error"}
MESSAGES = {400: "The request is malformed.", 403: "You do not have permission to perform this action.",
            405: "This method is not allowed here.", 413: "The request body is too large.",
            415: "This content type is not supported here.", 500: "Something went wrong on the server; it has been logged."}


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


def json_error(status_code: int, message: str = "", code: str = "") -> JsonResponse:
    """The API's error body as a plain Django response, for answers given outside DRF."""
    code = code or CODES.get(status_code, "error")
    message = message or MESSAGES.get(status_code, "The request failed.")
    return JsonResponse(error_body(status_code, code, message), status=status_code)


class APIErrorMiddleware:
    """Scoped to ``/v3/``; place it first so it also sees what the other middleware answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request.path_info):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "The Content-Length header is not a number.")
        if length > max_body_bytes():
            exc = too_large(length)
            return json_error(exc.status_code, str(exc.detail), exc.default_code)
        response = self.get_response(request)
        if response.status_code >= 400 and not _is_drf(response):
            return self._as_json(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Exceptions DRF did not handle: a client's fault answers 4xx, anything else a logged 500."""
        if not is_api_path(request.path_info):
            return None
        if isinstance(exception, RequestDataTooBig):
            exc = too_large()
            return json_error(exc.status_code, str(exc.detail), exc.default_code)
        if isinstance(exception, SuspiciousOperation):
            logger.warning("Suspicious request %s %s: %s", request.method, request.path, exception)
            return json_error(400, "The request was refused as malformed.")
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return json_error(500)

    @staticmethod
    def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        status_code = response.status_code
        message = ""
        if status_code == 404:
            message = f"Nothing is at {request.path[:200]}; GET /v3/ lists the endpoints."
        elif status_code == 405:
            message = f"{request.method[:20]} is not allowed at {request.path[:200]}."
        new = json_error(status_code, message)
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in response:
                new[header] = response[header]
        return new


def _is_drf(response: HttpResponse) -> bool:
    """DRF's responses already carry the error body (or render it for the browsable API)."""
    from rest_framework.response import Response

    return isinstance(response, Response) or response.get("Content-Type", "").startswith("application/json")
