from tests.factories import PASSWORD


def sign_in(page, base_url: str, email: str, password: str = PASSWORD):
    """Sign in through the real form and wait for the overview."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")
