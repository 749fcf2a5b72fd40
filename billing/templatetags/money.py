from django import template

from console.money import format_amount

register = template.Library()


@register.filter
def money(nano, currency=None):
    """`{{ amount_nano|money:account.currency }}` → ¥1,234.50."""
    if nano is None or nano == "":
        return ""
    return format_amount(int(nano), currency)


@register.filter
def pack_price(product, currency):
    """`{{ product|pack_price:account.currency }}` → the price in nano."""
    return product.price_nano(currency)


@register.filter
def money_exact(nano, currency=None):
    """Every significant decimal: a fee of ¥0.000984 does not read as ¥0.00."""
    if nano is None or nano == "":
        return ""
    return format_amount(int(nano), currency, places=None)


@register.filter
def percent(basis_points):
    """500 → 5%, 1050 → 10.5%: promotions are stored in basis points (exact integers)."""
    whole, rest = divmod(int(basis_points), 100)
    return f"{whole}.{rest:02d}".rstrip("0").rstrip(".") + "%"
