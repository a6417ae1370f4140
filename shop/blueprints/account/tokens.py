"""The account page's API tokens: list them, revoke one (a real form post; htmx swaps the
section). Registers on the account blueprint; tokens are created through the API itself."""
from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from ...models import ApiToken
from ...services import api_tokens
from ...services.errors import NotFound
from .. import ID
from ..htmx import is_htmx, vary
from .routes import bp


@bp.app_template_global("api_tokens")
def tokens_of_current_user() -> list[ApiToken]:
    """The logged-in user's live tokens, for account/_tokens.html."""
    if not current_user.is_authenticated:
        return []
    return api_tokens.for_user(current_user.id)


@bp.post(f"/tokens/<{ID}:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    """Revoke one of the user's API tokens; another user's is a 404."""
    try:
        api_tokens.revoke(current_user.id, token_id)
    except NotFound as exc:
        abort(404, description=exc.message)
    message = "Token revoked. Apps using it can no longer reach your account."
    if is_htmx():
        return vary(make_response(render_template("account/_tokens_response.html",
                                                  announcement=message)))
    flash(message, "success")
    return redirect(url_for("account.index", _anchor="api-tokens"), 303)
