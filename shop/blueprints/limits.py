"""Rate-limit scopes shared by more than one entry point: a password tried on the login page or
on the API's token endpoint counts in the same buckets, and so does a registration."""

LOGIN_ADDRESS_SCOPE = "login-address"
LOGIN_ACCOUNT_SCOPE = "login-account"
# Flask-Limiter's scope for a plain `limiter.limit` on a view is its endpoint name.
REGISTER_SCOPE = "account.register"
