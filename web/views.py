"""The web UI: server-rendered pages over the same selectors and services as REST, made live by the page's JS."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, PasswordChangeView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.login_throttle import ThrottledAuthenticationForm, ThrottledPasswordChangeForm
from accounts.models import Role
from accounts.principal import InvalidToken, Principal, display_name, principal_of_user
from memories.models import Memory
from memories.search import highlight
from memories.selectors import consistent_read, memory_list, memory_search, memory_trash
from memories.serializers import MemoryOutputSerializer
from memories.services import VersionConflict, memory_create, memory_delete, memory_restore, memory_update
from memories.visibility import can_change, can_create, visible_memories
from realtime.log import current_seq
from realtime.models import Event
from web.forms import MemoryForm, VersionForm

# The newest memories the page lists; live events add to them.
LIST_LIMIT = 50
SEARCH_LIMIT = 20
# The trash page lists this many of the most recently deleted memories.
TRASH_LIMIT = 100
# Characters of a result's content the search page shows, around the first match.
SNIPPET_CHARACTERS = 300


def tenant_page(view: Callable) -> Callable:
    """Log-in required, and the user's Principal on request.principal (a user in no tenant gets a 403 page)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            request.principal = principal_of_user(request.user.pk)
        except InvalidToken:
            return render(request, "web/no_tenant.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def page(request: HttpRequest, template: str, context: dict | None = None, status: int = 200) -> HttpResponse:
    """Render a page of a tenant's user: the header shows who they are and, to admins, the test client."""
    viewer = request.principal
    return render(
        request, template, {"viewer": viewer, "is_admin": viewer.role == Role.ADMIN, **(context or {})}, status=status
    )


class Login(LoginView):
    template_name = "web/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs) -> dict:
        # The demo's users and password are a development hint, never shown in production.
        return {**super().get_context_data(**kwargs), "demo_hint": settings.DEBUG}


class PasswordChange(PasswordChangeView):
    """Django's view; this session stays logged in (a new key), the user's others are logged out."""

    template_name = "web/password_change.html"
    form_class = ThrottledPasswordChangeForm
    success_url = reverse_lazy("web:password_change_done")

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "request": self.request}


def memory_json(viewer: Principal, memory: Memory) -> dict:
    """A memory as REST shows it, plus whether this viewer may change it (the visibility module decides)."""
    return {**MemoryOutputSerializer(memory).data, "can_edit": can_change(viewer, memory)}


def snapshot(viewer: Principal) -> dict:
    """The newest visible memories and the event `seq` they reflect, read in one snapshot: the page streams on."""
    with consistent_read():
        memories = list(memory_list(viewer=viewer, filters={})[:LIST_LIMIT])
        seq = current_seq(viewer.tenant_id)
    return {"seq": seq, "memories": [memory_json(viewer, memory) for memory in memories]}


def _page_context(request: HttpRequest, form: MemoryForm | None = None) -> dict:
    viewer = request.principal
    writable = can_create(viewer)
    state = snapshot(viewer)
    boot = {
        **state,
        "writable": writable,
        "urls": {
            "snapshot": reverse("web:snapshot"),
            "meta": reverse("web:meta"),
            "events": reverse("event-list"),
            "login": reverse("web:login"),
        },
    }
    return {
        "snapshot": state,
        "boot": boot,
        "writable": writable,
        "form": form if form is not None else (MemoryForm() if writable else None),
    }


@require_GET
@tenant_page
def home(request: HttpRequest) -> HttpResponse:
    return page(request, "web/home.html", _page_context(request))


@require_POST
@tenant_page
def create(request: HttpRequest) -> HttpResponse:
    if not can_create(request.principal):
        raise PermissionDenied("Guests are read-only.")
    form = MemoryForm(request.POST)
    if not form.is_valid():
        return page(request, "web/home.html", _page_context(request, form), status=400)
    memory_create(author=request.principal, **form.memory_data)
    return redirect("web:home")


def _visible(viewer: Principal, pk) -> Memory:
    memory = visible_memories(viewer).select_related("owner").filter(pk=pk).first()
    if memory is None:
        raise Http404("No such memory, or not yours to see.")
    return memory


def last_editor(memory: Memory) -> str:
    """Who made the memory's latest change, from the event log; its owner when the log no longer has it."""
    data = (
        Event.objects.filter(
            tenant_id=memory.tenant_id, memory_id=memory.pk, type__in=("memory.created", "memory.updated")
        )
        .order_by("-seq")
        .values_list("data", flat=True)
        .first()
    )
    return data["user_name"] if data else display_name(memory.owner)


def _conflict(current: Memory) -> dict:
    return {"current": current, "changed_by": last_editor(current)}


@require_http_methods(["GET", "POST"])
@tenant_page
def edit(request: HttpRequest, pk) -> HttpResponse:
    viewer = request.principal
    memory = _visible(viewer, pk)
    if not can_change(viewer, memory):
        raise PermissionDenied("You may not change this memory.")
    context = {"memory": memory, "boot": {"memory_id": str(memory.pk), "seq": current_seq(viewer.tenant_id)}}
    if request.method == "GET":
        return page(request, "web/edit.html", {**context, "form": MemoryForm.of(memory)})
    form = MemoryForm(request.POST)
    if not form.is_valid():
        return page(request, "web/edit.html", {**context, "form": form}, status=400)
    try:
        memory_update(
            editor=viewer, memory=memory, data=form.memory_data, expected_version=form.cleaned_data["expected_version"]
        )
    except Memory.DoesNotExist:
        return page(request, "web/gone.html", status=404)
    except VersionConflict as conflict:
        # Nothing was written: show what it is now, keep what they typed, and let them edit again from there.
        current = conflict.current
        context.update(memory=current, form=MemoryForm.of(current), mine=form.memory_data, **_conflict(current))
        return page(request, "web/edit.html", context, status=409)
    return redirect("web:home")


@require_POST
@tenant_page
def delete(request: HttpRequest, pk) -> HttpResponse:
    viewer = request.principal
    memory = _visible(viewer, pk)
    form = VersionForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("expected_version must be a version number.")
    try:
        memory_delete(editor=viewer, memory=memory, expected_version=form.cleaned_data["expected_version"])
    except Memory.DoesNotExist:
        return page(request, "web/gone.html", status=404)
    except VersionConflict as conflict:
        return page(request, "web/delete_conflict.html", _conflict(conflict.current), status=409)
    return redirect("web:home")


@require_POST
@tenant_page
def restore(request: HttpRequest, pk) -> HttpResponse:
    """Take a memory out of the trash (Undo, or the trash page): 204 to a fetch asking for JSON, else home."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        memory_restore(actor=request.principal, memory=pk)
    except Memory.DoesNotExist:
        if wants_json:
            return JsonResponse({"detail": "No such memory in the trash, or not yours to restore."}, status=404)
        return page(request, "web/gone.html", status=404)
    if wants_json:
        return HttpResponse(status=204)
    return redirect("web:home")


@require_GET
@tenant_page
def trash(request: HttpRequest) -> HttpResponse:
    """The deleted memories the user may restore, most recently deleted first."""
    memories = list(memory_trash(viewer=request.principal)[: TRASH_LIMIT + 1])
    kept = timedelta(days=settings.PUOMEMO_TRASH_RETENTION_DAYS)
    context = {
        "memories": [{"memory": m, "purged_on": m.deleted_at + kept} for m in memories[:TRASH_LIMIT]],
        "more": len(memories) > TRASH_LIMIT,
        "retention_days": settings.PUOMEMO_TRASH_RETENTION_DAYS,
    }
    return page(request, "web/trash.html", context)


@require_GET
@tenant_page
def memory(request: HttpRequest, pk) -> HttpResponse:
    """One memory, read-only: where search results lead; its owner and admins get an Edit link."""
    viewer = request.principal
    found = _visible(viewer, pk)
    return page(request, "web/memory.html", {"memory": found, "can_edit": can_change(viewer, found)})


@require_GET
@tenant_page
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:500]
    results = []
    if query:
        for hit in memory_search(viewer=request.principal, q=query, limit=SEARCH_LIMIT):
            memory = hit.memory
            results.append(
                {
                    "memory": memory,
                    "match": hit.match,
                    "title": highlight(memory.title, query),
                    "snippet": highlight(memory.content, query, width=SNIPPET_CHARACTERS),
                }
            )
    return page(request, "web/search.html", {"q": query, "results": results})


@require_GET
@tenant_page
def snapshot_json(request: HttpRequest) -> JsonResponse:
    """The page's list again, after `resync_required` (events older than the log)."""
    return JsonResponse(snapshot(request.principal))


@require_GET
@tenant_page
def memory_meta(request: HttpRequest) -> JsonResponse:
    """For memories the page learnt of from events: their owner and whether the viewer may change them."""
    viewer = request.principal
    ids = []
    for raw in request.GET.getlist("id")[:LIST_LIMIT]:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            return JsonResponse({"detail": f"Not a memory id: {raw[:100]}"}, status=400)
    memories = visible_memories(viewer).select_related("owner").filter(pk__in=ids)
    return JsonResponse(
        {str(m.pk): {"owner": m.owner.get_username(), "can_edit": can_change(viewer, m)} for m in memories}
    )


@require_GET
@tenant_page
def test_client(request: HttpRequest) -> HttpResponse:
    """A raw /ws console for admins: connect by session or token, subscribe, ping, and watch every frame."""
    if request.principal.role != Role.ADMIN:
        raise PermissionDenied("The test client is for admins.")
    return page(request, "web/test_client.html")
