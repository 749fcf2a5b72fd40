from console.tenancy import current_membership
from notifications.selectors import notifications_unread_count


def notifications(request):
    """`unread_notifications` for the bell in the top bar (only for a member of an account).

    Reuses the membership cached on the request by the tenancy helpers, so the bell costs
    one COUNT on the partial index of unread rows."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = current_membership(request)
    if membership is None:
        return {}
    return {
        "unread_notifications": notifications_unread_count(user=user, account=membership.account)
    }
