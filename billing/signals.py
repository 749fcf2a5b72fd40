"""What billing tells the apps above it, which it does not import (they listen)."""

from django.dispatch import Signal

# A write of billing's own may have moved the balance across the alert threshold mirrored
# on the wallet (`Wallet.alert_below_nano`): a purchase that took it below, or a recharge
# that may lift it back over (which re-arms the alert). Sent with `account_id`, inside the
# write's transaction. The alerts app listens (alerts/apps.py). The gateway's settlement
# does not send it: it schedules the evaluation itself.
balance_alert_threshold = Signal()

# A card payment for something an app above billing sells (`Payment.purpose` other than a
# recharge) succeeded: the app that sold it delivers it and returns the ledger entry it
# wrote. Sent with `payment` (locked, still pending) and `at`, inside the settlement's
# transaction (in a savepoint). A receiver that cannot deliver any more (the plan it was for
# started or ended meanwhile) raises ServiceError: the money was taken, so billing credits it
# to the balance instead, as a recharge without bonus. The plans app listens (plans/apps.py).
purchase_paid = Signal()
