"""Permission classes shared by the API viewsets."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.access import access_for


class ReadOnlyUnlessAdmin(BasePermission):
    """Anyone authenticated may read (querysets are scoped); writing needs an operator
    or a ministry-admin grant somewhere. Services then check the exact ministry."""

    message = "Your roles allow reading only."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        access = access_for(request.user)
        return access.operator or bool(access.admin_of)
