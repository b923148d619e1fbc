"""Reads of usage data, already scoped to the caller."""

from django.db.models import QuerySet

from accounts.access import access_for
from accounts.models import Ministry
from usage.models import MonthlyReport


def export_ministry_list(*, user) -> QuerySet[Ministry]:
    """Ministries whose usage the caller may export: all of them for operators and
    national auditors, their own for admins and auditors, none for anyone else."""
    access = access_for(user)
    if not access.is_staff_role:
        return Ministry.objects.none()
    readable = access.readable_ministries
    if readable is None:
        return Ministry.objects.all()
    return Ministry.objects.filter(pk__in=readable)


def monthly_report_list(*, user) -> QuerySet[MonthlyReport]:
    """Monthly reports the caller may read (national ones only for those who read all),
    without their content."""
    access = access_for(user)
    reports = MonthlyReport.objects.select_related("ministry").defer("content")
    if not access.is_staff_role:
        return reports.none()
    readable = access.readable_ministries
    if readable is None:
        return reports
    return reports.filter(ministry_id__in=readable)
