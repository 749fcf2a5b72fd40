"""What billing tells the apps above it, which it does not import (they listen)."""

from django.dispatch import Signal

# A write of billing's own may have moved the balance across the alert threshold mirrored
# on the wallet (`Wallet.alert_below_nano`): a purchase that took it below, or a recharge
# that may lift it back over (which re-arms the alert). Sent with `account_id`, inside the
# write's transaction. The alerts app listens (alerts/apps.py). The gateway's settlement
# does not send it: it schedules the evaluation itself.
balance_alert_threshold = Signal()
