"""Django's ASGI handler with a request's sync work in one hop to a thread: signals, middleware chain, view.

Django's own ASGI handler runs the middleware in async mode: every sync-only middleware and each
process_request/process_response of the others crosses to a sync thread and back, the request signals
cross once more each way, and every request starts a thread of its own (asgiref's ThreadSensitiveContext)
with a database connection of its own: about twenty hops and a thread start for one REST request on this
stack. The views and middleware here are all sync, so the chain is loaded in sync mode and a request runs
in one hop to a small pool of long-lived threads (docs/performance.md).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import django
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponse
from django.urls import set_script_prefix

# Requests a process runs at once. Few: the work is CPU under one GIL, and a slow request (a search loading its
# model) still leaves the others threads; each holds a pooled database connection only while it runs a request.
THREADS = 4


class OneHopASGIHandler(ASGIHandler):
    """An ASGI handler whose middleware chain is sync, entered once per request on a thread of its pool."""

    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="http")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self.executor, self.respond, scope, body_file)
            response._handler_class = self.__class__
            await self.send_response(response, send)
            if response.streaming:  # closed once its content is out, on any of the threads
                await loop.run_in_executor(self.executor, response.close)
        finally:
            body_file.close()

    def respond(self, scope, body_file) -> HttpResponse:
        """What Django's WSGI handler does for a request, on one thread: signals, the request, the chain."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self.get_response(request)
        if not response.streaming:
            # Its content is bytes already: close it here, where request_finished hands this
            # thread's database connection back to the pool.
            response.close()
        return response


def get_asgi_application() -> OneHopASGIHandler:
    """Set Django up and return the handler (django.core.asgi.get_asgi_application's counterpart)."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
