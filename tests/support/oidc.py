"""A loopback OpenID Connect provider for login tests (stdlib ``http.server`` in a thread).

Usage::

    with oidc_provider(client_id="alignboard", client_secret="s3cret",
                       user=OidcUser(email="ana@example.com", name="Ana")) as idp:
        idp.metadata_url   # "http://127.0.0.1:PORT/.well-known/openid-configuration"
        ...                # point st.login at it (see ``secrets_toml``)

It implements just what an authorization-code login needs, checked the way a real
provider checks it: discovery, ``/authorize`` (auto-approves the configured user and
redirects back with ``code`` and ``state``; only registered clients and the exact
redirect URI of the request), ``/token`` (client secret by HTTP Basic or form post, one-use
codes, PKCE S256, an RS256-signed ``id_token`` carrying the request's ``nonce``), ``/jwks``
(the public half of a key generated at start), ``/userinfo`` (Bearer access token) and
``/logout`` (RP-initiated logout: back to ``post_logout_redirect_uri``). Every request is
recorded in ``requests`` so a test can assert what the relying party did.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class OidcUser:
    """The user the provider signs in (it approves every login as this user)."""

    email: str
    name: str
    sub: str = "user-1"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass
class OidcProvider:
    """A running loopback provider."""

    issuer: str
    """Base URL, e.g. ``http://127.0.0.1:PORT`` (also the ``iss`` of its tokens)."""
    client_id: str
    client_secret: str
    user: OidcUser
    key: RSAKey = field(repr=False)
    requests: list[str] = field(default_factory=list)
    """``"METHOD /path"`` of every request served, in order."""
    logins: int = 0
    """Tokens issued (completed logins)."""
    logouts: int = 0
    _codes: dict[str, _Grant] = field(default_factory=dict, repr=False)
    _access: dict[str, OidcUser] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def metadata_url(self) -> str:
        """The discovery document's URL (``server_metadata_url`` in secrets.toml)."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    def secrets_toml(self, redirect_uri: str, *, provider: str | None = None) -> str:
        """A ``.streamlit/secrets.toml`` that logs in through this provider.

        Args:
            redirect_uri: The dashboard's ``/oauth2callback`` URL (``{port}`` is filled in
                by Streamlit with ``server.port``).
            provider: None for the default provider (keys under ``[auth]``), else a name
                for an ``[auth.NAME]`` table.
        """
        head = [
            "[auth]",
            f"redirect_uri = {json.dumps(redirect_uri)}",
            f"cookie_secret = {json.dumps(secrets.token_hex(32))}",
        ]
        creds = [
            f"client_id = {json.dumps(self.client_id)}",
            f"client_secret = {json.dumps(self.client_secret)}",
            f"server_metadata_url = {json.dumps(self.metadata_url)}",
        ]
        if provider is None:
            return "\n".join(head + creds) + "\n"
        return "\n".join([*head, "", f"[auth.{provider}]", *creds]) + "\n"

    # --- the endpoints -------------------------------------------------------------

    def _claims(self, user: OidcUser) -> dict[str, Any]:
        return {"sub": user.sub, "email": user.email, "email_verified": True, "name": user.name}

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """``GET /authorize``: approve at once and redirect back with a code."""
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            return _json(400, {"error": "invalid_client"})
        if query.get("response_type") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", echo=query)
        if "openid" not in query.get("scope", "").split():
            return _redirect(redirect_uri, error="invalid_scope", echo=query)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(
                self.client_id,
                redirect_uri,
                query.get("nonce"),
                query.get("code_challenge"),
                query.get("code_challenge_method"),
            )
        return _redirect(redirect_uri, code=code, echo=query)

    def token(self, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """``POST /token``: exchange a code for an access token and a signed id_token."""
        client_id, client_secret = _client_credentials(headers, form)
        if client_id != self.client_id or client_secret != self.client_secret:
            return _json(401, {"error": "invalid_client"})
        if form.get("grant_type") != "authorization_code":
            return _json(400, {"error": "unsupported_grant_type"})
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # codes are single-use
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _json(400, {"error": "invalid_grant"})
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if grant.code_challenge_method != "S256" or expected != grant.code_challenge:
                return _json(400, {"error": "invalid_grant", "error_description": "PKCE"})
        now = int(time.time())
        claims = {
            **self._claims(self.user),
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        access = secrets.token_urlsafe(24)
        with self._lock:
            self._access[access] = self.user
            self.logins += 1
        return _json(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": "openid email profile",
                "id_token": id_token,
            },
        )

    def userinfo(self, headers: Any) -> tuple[int, dict[str, str], bytes]:
        """``GET /userinfo``: the user's claims for a Bearer access token."""
        auth = headers.get("Authorization", "")
        user = self._access.get(auth.removeprefix("Bearer ").strip())
        if not auth.startswith("Bearer ") or user is None:
            return _json(401, {"error": "invalid_token"})
        return _json(200, self._claims(user))

    def logout(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """``GET /logout`` (end_session_endpoint): back to the relying party."""
        with self._lock:
            self.logouts += 1
        target = query.get("post_logout_redirect_uri")
        if not target:
            return 200, {"Content-Type": "text/plain"}, b"signed out"
        return _redirect(target, echo=query)

    def jwks(self) -> tuple[int, dict[str, str], bytes]:
        """``GET /jwks``: the public signing key."""
        return _json(200, {"keys": [self.key.as_dict(private=False)]})


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return status, headers, json.dumps(body).encode()


def _redirect(
    target: str, *, echo: dict[str, str] | None = None, **params: str
) -> tuple[int, dict[str, str], bytes]:
    """A 302 to ``target`` with ``params`` (and the request's ``state``, from ``echo``)."""
    if echo is not None and "state" in echo:
        params["state"] = echo["state"]
    sep = "&" if urlsplit(target).query else "?"
    return 302, {"Location": f"{target}{sep}{urlencode(params)}"}, b""


def _client_credentials(headers: Any, form: dict[str, str]) -> tuple[str | None, str | None]:
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(auth[6:]).decode()
            user, _, password = raw.partition(":")
            return unquote_plus(user), unquote_plus(password)
        return None, None
    return form.get("client_id"), form.get("client_secret")


def _handler(idp: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, reply: tuple[int, dict[str, str], bytes]) -> None:
            status, headers, body = reply
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            idp.requests.append(f"GET {url.path}")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            routes = {
                "/.well-known/openid-configuration": lambda: _json(200, idp.metadata()),
                "/authorize": lambda: idp.authorize(query),
                "/jwks": idp.jwks,
                "/userinfo": lambda: idp.userinfo(self.headers),
                "/logout": lambda: idp.logout(query),
            }
            route = routes.get(url.path)
            self._send(route() if route else _json(404, {"error": "not_found"}))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            idp.requests.append(f"POST {url.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            if url.path == "/token":
                self._send(idp.token(self.headers, form))
            else:
                self._send(_json(404, {"error": "not_found"}))

    return Handler


@contextlib.contextmanager
def oidc_provider(
    *,
    user: OidcUser,
    client_id: str = "alignboard-test",
    client_secret: str | None = None,
) -> Iterator[OidcProvider]:
    """Run a loopback OIDC provider on a free 127.0.0.1 port for the ``with`` block.

    A fresh RSA key (2048 bits) is generated for each provider: tokens from one run can
    never verify against another.
    """
    key = RSAKey.generate_key(
        2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    idp = OidcProvider(
        issuer=f"http://127.0.0.1:{port}",
        client_id=client_id,
        client_secret=client_secret or secrets.token_urlsafe(16),
        user=user,
        key=key,
    )
    server.RequestHandlerClass = _handler(idp)
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
