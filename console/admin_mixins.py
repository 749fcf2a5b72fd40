"""Behaviours the back-office's admin classes share: read-only money and audited catalogue."""

from django.contrib import admin
from django.db import transaction

from console.models import AuditEvent
from console.services import audit_record


class ReadOnlyAdminMixin:
    """Nobody adds, changes or deletes these rows in the admin, not even a superuser: the
    ledger and the documents made from it are append-only and written by services only.
    Viewing follows the model's view permission as usual. Without the delete permission the
    admin offers no "delete selected" action."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        names = [field.name for field in self.model._meta.fields]
        return list(dict.fromkeys([*names, *super().get_readonly_fields(request, obj)]))


class AddOnlyAdminMixin:
    """Catalogue rows that are never changed or deleted, only followed by a new row from a
    later moment (model prices, plan prices and limits): what was charged at stays readable."""

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class CatalogueAuditMixin:
    """Every catalogue change made in the admin writes one audit event (actor kind staff),
    in the same transaction as the change. Values of `audit_hidden_fields` (secrets) are
    recorded as changed, never with their value."""

    audit_hidden_fields: tuple[str, ...] = ()

    def _audit(self, request, obj, verb: str, fields: dict | None = None) -> None:
        audit_record(
            action=f"catalogue.{obj._meta.model_name}_{verb}",
            actor=request.user,
            actor_kind=AuditEvent.ActorKind.STAFF,
            target=obj,
            ip=request.META.get("REMOTE_ADDR") or None,
            metadata={"object": str(obj), **({"fields": fields} if fields is not None else {})},
        )

    def _changed(self, form) -> dict:
        return {
            name: (
                "(hidden)" if name in self.audit_hidden_fields else str(form.cleaned_data.get(name))
            )
            for name in form.changed_data
        }

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self._audit(request, obj, "change" if change else "add", self._changed(form))

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit(request, obj, "delete")
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self._audit(request, obj, "delete")
            super().delete_queryset(request, queryset)
