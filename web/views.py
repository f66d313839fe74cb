"""The web UI: server-rendered pages over the same selectors and services as REST, made live by the page's JS."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, PasswordChangeView
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.login_throttle import ThrottledAuthenticationForm, ThrottledPasswordChangeForm
from accounts.models import Membership, Role
from accounts.principal import InvalidToken, Principal, display_name, principal_of_user
from memories.models import Memory
from memories.search import highlight
from memories.selectors import consistent_read, memory_list, memory_search, memory_trash
from memories.serializers import MemoryOutputSerializer
from memories.services import VersionConflict, memory_create, memory_delete, memory_restore, memory_update
from memories.visibility import can_change, can_create, visible_memories
from realtime.log import stream_position
from web.forms import ListQuery, MemoryForm, VersionForm
from web.markdown import render as render_markdown

# The memories a page of the list holds (the newest, then older ones on "Load older"); live events add to them.
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
        try:
            return view(request, *args, **kwargs)
        except Http404:
            # The page's own 404, under DEBUG too (never Django's debug page listing the URLs).
            return page(request, "web/not_found.html", status=404)

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
    """A memory as REST shows it, plus its rendered Markdown, who changed it last and whether this viewer may."""
    return {
        **MemoryOutputSerializer(memory).data,
        "html": render_markdown(memory.content),
        "updated_by_name": memory.updated_by_name or display_name(memory.owner),
        "can_edit": can_change(viewer, memory),
    }


def list_query(params) -> ListQuery:
    """The list's filters and cursor from a query string (empty fields are no filter)."""
    return ListQuery(data={name: value for name, value in params.items() if value.strip()})


def snapshot(viewer: Principal, query: ListQuery | None = None) -> dict:
    """A page of visible memories matching the query's filters, in its order, after its cursor if it has one.

    Read in one snapshot with the event `seq` it reflects: the page streams on from there. `more` says whether
    further ones match too.
    """
    memories = memory_list(viewer=viewer, filters=query.filters() if query else {})
    cursor = query.cursor() if query else None
    if query and query.oldest_first():
        memories = memories.order_by("created_at", "id")
        if cursor is not None:
            memories = memories.filter(Q(created_at__gt=cursor[0]) | Q(created_at=cursor[0], pk__gt=cursor[1]))
    elif cursor is not None:
        memories = memories.filter(Q(created_at__lt=cursor[0]) | Q(created_at=cursor[0], pk__lt=cursor[1]))
    with consistent_read():
        page = list(memories[: LIST_LIMIT + 1])
        position = stream_position(viewer.tenant_id)
    return {
        **position,
        "memories": [memory_json(viewer, memory) for memory in page[:LIST_LIMIT]],
        "more": len(page) > LIST_LIMIT,
    }


def _page_context(request: HttpRequest, form: MemoryForm | None = None, query: ListQuery | None = None) -> dict:
    viewer = request.principal
    writable = can_create(viewer)
    query = query if query is not None else list_query(request.GET)
    valid = query.is_valid()
    params = query.params() if valid else {}
    state = snapshot(viewer, query if valid else None)
    boot = {
        **state,
        "filters": params,
        "user_id": str(viewer.user_id),
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
        "filters": params,
        "filtered": bool(query.filters()) if valid else False,
        "query": query,
        "owners": tenant_usernames(viewer),
        "writable": writable,
        "form": form if form is not None else (MemoryForm() if writable else None),
    }


def tenant_usernames(viewer: Principal) -> list[str]:
    """The usernames of the viewer's tenant, for the owner filter."""
    return list(
        Membership.objects.filter(tenant_id=viewer.tenant_id)
        .order_by("user__username")
        .values_list("user__username", flat=True)
    )


@require_GET
@tenant_page
def home(request: HttpRequest) -> HttpResponse:
    query = list_query(request.GET)
    status = 200 if query.is_valid() else 400
    return page(request, "web/home.html", _page_context(request, query=query), status=status)


@require_http_methods(["GET", "POST"])
@tenant_page
def create(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # Back from the login page after the session ended: the form is on the list, the draft in the browser.
        return redirect(reverse("web:home") + "#new-heading")
    if not can_create(request.principal):
        raise PermissionDenied("Guests are read-only.")
    form = MemoryForm(request.POST)
    if not form.is_valid():
        return page(request, "web/home.html", _page_context(request, form), status=400)
    memory_create(author=request.principal, **form.memory_data)
    messages.success(request, "Saved.", extra_tags="new")  # the tag names the draft the page may drop now
    return redirect("web:home")


def _visible(viewer: Principal, pk) -> Memory:
    memory = visible_memories(viewer).select_related("owner").filter(pk=pk).first()
    if memory is None:
        raise Http404("No such memory, or not yours to see.")
    return memory


def last_editor(memory: Memory) -> str:
    """Who made the memory's latest change (recorded on it by the services); its owner when none was."""
    return memory.updated_by_name or display_name(memory.owner)


def _conflict(current: Memory) -> dict:
    return {"current": current, "changed_by": last_editor(current)}


@require_http_methods(["GET", "POST"])
@tenant_page
def edit(request: HttpRequest, pk) -> HttpResponse:
    viewer = request.principal
    memory = _visible(viewer, pk)
    if not can_change(viewer, memory):
        raise PermissionDenied("You may not change this memory.")
    context = {"memory": memory, "boot": {"memory_id": str(memory.pk), **stream_position(viewer.tenant_id)}}
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
    messages.success(request, "Saved.", extra_tags=f"edit:{memory.pk}")
    return redirect("web:home")


@require_POST
@tenant_page
def delete(request: HttpRequest, pk) -> HttpResponse:
    viewer = request.principal
    memory = _visible(viewer, pk)
    form = VersionForm(request.POST)
    json = wants_json(request)
    if not form.is_valid():
        if json:
            return JsonResponse(form.errors, status=400)
        return HttpResponseBadRequest("expected_version must be a version number.")
    try:
        memory_delete(editor=viewer, memory=memory, expected_version=form.cleaned_data["expected_version"])
    except Memory.DoesNotExist:
        if json:
            return JsonResponse({"detail": "Deleted meanwhile, or no longer yours to see."}, status=404)
        return page(request, "web/gone.html", status=404)
    except VersionConflict as conflict:
        if json:
            detail = f"Changed by {last_editor(conflict.current)} meanwhile: not deleted."
            return JsonResponse({"detail": detail, "memory": memory_json(viewer, conflict.current)}, status=409)
        return page(request, "web/delete_conflict.html", _conflict(conflict.current), status=409)
    # The list's fetch: it shows an Undo for a while (the memory goes to the trash).
    return HttpResponse(status=204) if json else redirect("web:home")


def wants_json(request: HttpRequest) -> bool:
    """The page's fetch (Accept: application/json) rather than a form's plain POST."""
    return "application/json" in request.headers.get("Accept", "")


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
    """The list again (after `resync_required`), or its next page (after `before`, `before_id`), as filtered."""
    query = list_query(request.GET)
    if not query.is_valid():
        return JsonResponse(query.errors, status=400)
    return JsonResponse(snapshot(request.principal, query))


@require_GET
@tenant_page
def memory_meta(request: HttpRequest) -> JsonResponse:
    """Memories the page learnt of from events, as the viewer sees them now, and whether they match its filters.

    Absent from the answer: deleted, or not the viewer's to see. The filters are the list's, applied by the
    same selector (memory_list), so a live list keeps exactly what a reload would show.
    """
    viewer = request.principal
    query = list_query(request.GET)
    if not query.is_valid():
        return JsonResponse(query.errors, status=400)
    ids = []
    for raw in request.GET.getlist("id")[:LIST_LIMIT]:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            return JsonResponse({"detail": f"Not a memory id: {raw[:100]}"}, status=400)
    memories = visible_memories(viewer).select_related("owner").filter(pk__in=ids)
    matching = set(memory_list(viewer=viewer, filters=query.filters()).filter(pk__in=ids).values_list("pk", flat=True))
    return JsonResponse({str(m.pk): {**memory_json(viewer, m), "matches": m.pk in matching} for m in memories})


@require_GET
@tenant_page
def test_client(request: HttpRequest) -> HttpResponse:
    """A raw /ws console for admins: connect by session or token, subscribe, ping, and watch every frame."""
    if request.principal.role != Role.ADMIN:
        raise PermissionDenied("The test client is for admins.")
    return page(request, "web/test_client.html")
