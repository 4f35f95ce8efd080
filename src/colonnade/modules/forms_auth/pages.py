"""The server's login and sign-out pages: plain HTML forms that work without
JavaScript, with labels, a heading, the autocomplete hints password managers
read, and an error announced to screen readers (``role="alert"``).

Everything inserted is HTML-escaped. The pages are sent with headers that keep
them out of frames (clickjacking a login form) and out of caches.
"""

from __future__ import annotations

from html import escape

#: Headers of every page here: no framing, no caching, no scripts, posts only to
#: this site.
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f6}"
    "main{max-width:22rem;margin:4rem auto;padding:2rem;background:#fff;"
    "border:1px solid #ccc;border-radius:6px}"
    "h1{font-size:1.4rem;margin-top:0}"
    "label{display:block;margin:1rem 0 .3rem;font-weight:600}"
    "input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;"
    "border:1px solid #767676;border-radius:4px}"
    "input:focus,button:focus{outline:3px solid #1a5fb4;outline-offset:1px}"
    "button{margin-top:1.4rem;padding:.55rem 1.2rem;font-size:1rem;color:#fff;"
    "background:#1a5fb4;border:0;border-radius:4px;cursor:pointer}"
    ".error{color:#a51d2d;font-weight:600}"
)


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    ).encode()


def login_page(
    action: str, *, error: str = "", user_name: str = "", signed_in: str = "", logout_url: str = ""
) -> bytes:
    """The sign-in form posting to ``action``; ``error`` shown above it,
    ``user_name`` filled in again, ``signed_in``: the user already signed in."""
    parts = ["<h1>Sign in</h1>"]
    if signed_in:
        parts.append(f"<p>You are signed in as <strong>{escape(signed_in)}</strong>.</p>")
        if logout_url:
            parts.append(_sign_out_form(logout_url))
    described = ""
    if error:
        parts.append(f'<p class="error" role="alert" id="error">{escape(error)}</p>')
        described = ' aria-describedby="error" aria-invalid="true"'
    parts.append(
        f'<form method="post" action="{escape(action)}">'
        '<label for="username">User name</label>'
        f'<input id="username" name="username" type="text" autocomplete="username" '
        f'autocapitalize="none" spellcheck="false" required value="{escape(user_name)}"'
        f"{described}{'' if user_name else ' autofocus'}>"
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        f'autocomplete="current-password" required{described}'
        f"{' autofocus' if user_name else ''}>"
        '<button type="submit">Sign in</button>'
        "</form>"
    )
    return _page("Sign in", "".join(parts))


def _sign_out_form(logout_url: str) -> str:
    return (
        f'<form method="post" action="{escape(logout_url)}">'
        '<button type="submit">Sign out</button></form>'
    )


def logout_page(logout_url: str, user_name: str) -> bytes:
    """The sign-out page: who is signed in, and a button that posts the sign-out."""
    if user_name:
        who = f"<p>You are signed in as <strong>{escape(user_name)}</strong>.</p>"
    else:
        who = "<p>You are not signed in.</p>"
    return _page("Sign out", f"<h1>Sign out</h1>{who}{_sign_out_form(logout_url)}")


def message_page(title: str, message: str) -> bytes:
    """A short page for a refused post (cross-site, too large, not a form)."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
