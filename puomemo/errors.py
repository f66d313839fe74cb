"""JSON errors under /api/: DRF's exception handler for Django's request limits, and a middleware for the rest."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import JsonResponse
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

API_PREFIX = "/api/"

# What a client sees for errors Django answers itself; never a traceback.
DETAILS = {404: "Not found.", 500: "Internal server error."}


def exception_handler(exc, context):
    """DRF's handler, plus Django's request limits as 413/400 (DRF leaves them to Django's HTML 400 page)."""
    # Django raises these lazily, when a view first reads request.data.
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"Request body is larger than the limit of {limit} bytes."
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent):
        detail = f"Too many form fields: the limit is {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}."
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


def api_errors_as_json(get_response):
    """Turn Django's HTML error pages under /api/ into `{"detail": …}`, with DEBUG on or off."""

    # A middleware rather than handler404/handler500: Django uses those only
    # with DEBUG off, and shows its technical HTML pages otherwise.
    def middleware(request):
        response = get_response(request)
        if (
            request.path_info.startswith(API_PREFIX)
            and response.status_code >= 400
            and not isinstance(response, Response)  # DRF's own, content-negotiated
            and "json" not in response.get("Content-Type", "")
        ):
            detail = DETAILS.get(response.status_code, response.reason_phrase)
            return JsonResponse({"detail": detail}, status=response.status_code)
        return response

    return middleware


class AppendSlashMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, answering a POST without its slash with the 301 of production under DEBUG too."""

    def get_full_path_with_slash(self, request) -> str:
        # Under DEBUG Django raises a RuntimeError here to warn the developer: a 500 to a user of `make run`.
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))
