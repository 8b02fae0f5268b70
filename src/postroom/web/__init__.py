"""The web face (issue 21): admin console, self-service, client autoconfiguration,
metrics — an HTTPS listener in postroom's own event loop.

Owns nothing itself; its modules (docs/decisions/0053-web-stack.md):
- server.py: the listener (uvicorn's h11 protocol on sockets it binds itself, TLS from
  TlsContexts, the shared connection limits, slow-client deadlines, the drain).
- application.py: `build_app(ctx)` — the Starlette app: routes of every page module,
  middleware, error pages. middleware.py: security headers on every answer, body cap.
- context.py: `WebContext` (what pages may use) and `context(request)`.
- sessions.py: server-side sessions (store role WebStore) behind a `__Host-` cookie,
  `current_user`, `require_user`, `require_admin`, `require_recent_auth`.
- auth.py: the login/logout/reauth pages (IMAP's guarded authenticate); re-exports the
  session names pages use. clients.py: the client address (WEB_TRUSTED_PROXIES).
- forms.py: CSRF tokens and `checked_form`.  render.py: templates, flash, redirects.
- audit.py: the admin audit log.  twofactor.py: the second factor of the login.
- admin*.py, selfservice*.py, autoconfig.py, health.py: the pages (one owner each).

Floor: protocols (it imports services and below, never smtp/, imap/, pop3/, managesieve/).
"""
