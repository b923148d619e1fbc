"""Console pages of meetings: an agent's rooms (create, join) and the operators'
media nodes (cordon, drain, enable)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from audit.actor import Actor
from console.views import operator_required
from media_nodes import services as node_services
from media_nodes.allocations import allocation_live, allocation_live_get, allocation_place
from media_nodes.models import MediaNode
from media_nodes.placement import NoNodeAvailable
from rooms import selectors, services
from rooms.models import Room


@login_required
@require_http_methods(["GET", "POST"])
def rooms(request):
    """The rooms an agent may join, and a form to create one."""
    error = None
    if request.method == "POST":
        try:
            room = services.room_create(
                actor=Actor.from_request(request),
                name=request.POST.get("name", ""),
                access=request.POST.get("access", Room.Access.MINISTRY),
                expected_size=_int(request.POST.get("expected_size"), 10),
            )
        except (ValidationError, PermissionDenied) as exc:
            error = " ".join(getattr(exc, "messages", [str(exc)]))
        else:
            messages.success(request, _("Room created: %(slug)s") % {"slug": room.slug})
            return redirect("console:room", slug=room.slug)
    return render(
        request,
        "console/rooms.html",
        {
            "rooms": selectors.room_list(user=request.user)[:100],
            "access_choices": Room.Access.choices,
            "error": error,
        },
    )


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@login_required
@require_http_methods(["GET", "POST"])
def room(request, slug):
    """A room's page; joining places it on a node and shows where to connect."""
    room = get_object_or_404(Room, slug=slug, deleted_at__isnull=True)
    if not services.can_join(request.user, room):
        raise PermissionDenied
    joined = error = None
    if request.method == "POST":
        try:
            allocation = allocation_live(room_id=room.pk)
            if allocation is None:
                allocation_place(room_id=room.pk)
                allocation = allocation_live_get(room_id=room.pk)
            joined = services.join_token(agent=request.user, room=room, allocation=allocation)
        except NoNodeAvailable as exc:
            error = str(exc)
    return render(request, "console/room.html", {"room": room, "joined": joined, "error": error})


@operator_required
def nodes(request):
    """Operators' view of the media nodes: state, health, load, live rooms."""
    rows = MediaNode.objects.annotate(
        live=Count("allocations", filter=Q(allocations__closed_at__isnull=True))
    )
    return render(request, "console/nodes.html", {"nodes": rows})


@operator_required
@require_POST
def node_state(request, name):
    node = get_object_or_404(MediaNode, name=name)
    state = request.POST.get("state")
    deadline = None
    if state == MediaNode.State.DRAINING:
        deadline = timezone.now() + timezone.timedelta(
            minutes=_int(request.POST.get("minutes"), 30)
        )
    try:
        node_services.node_set_state(
            actor=Actor.from_request(request), node=node, state=state, deadline=deadline
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("console:nodes")
