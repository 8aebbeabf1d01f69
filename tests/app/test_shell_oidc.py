"""The loopback OIDC provider the login tests use behaves like a strict real one."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.oidc import OidcUser, oidc_provider

USER = OidcUser(email="ana@example.com", name="Ana", sub="ana-1")
REDIRECT = "http://127.0.0.1:1/oauth2callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url: str) -> tuple[int, dict, bytes]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _post(url: str, form: dict, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=urlencode(form).encode(), method="POST")
    if auth:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _authorize(idp, verifier: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = {
        "client_id": idp.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    status, headers, _ = _get(f"{idp.issuer}/authorize?{urlencode(query)}")
    assert status == 302
    location = urlsplit(headers["Location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/oauth2callback" and params["state"] == "st-1"
    return params["code"]


def test_code_flow_signs_an_id_token_for_the_configured_user():
    with oidc_provider(user=USER) as idp:
        code = _authorize(idp, "v" * 50)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "v" * 50,
        }
        # Wrong secret, wrong verifier: refused (and the code survives a bad secret).
        assert _post(f"{idp.issuer}/token", form, (idp.client_id, "nope"))[0] == 401
        status, token = _post(f"{idp.issuer}/token", form, (idp.client_id, idp.client_secret))
        assert status == 200
        # Codes are single use.
        again = _post(f"{idp.issuer}/token", form, (idp.client_id, idp.client_secret))
        assert again[0] == 400
        _, _, jwks = _get(f"{idp.issuer}/jwks")
        claims = jwt.decode(
            token["id_token"], KeySet.import_key_set(json.loads(jwks)), algorithms=["RS256"]
        ).claims
        req = urllib.request.Request(f"{idp.issuer}/userinfo")
        req.add_header("Authorization", f"Bearer {token['access_token']}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            info = json.loads(resp.read())
    assert claims["iss"] == idp.issuer and claims["aud"] == idp.client_id
    assert claims["nonce"] == "n-1" and claims["email"] == USER.email
    assert info["email"] == USER.email and idp.logins == 1


def test_pkce_mismatch_and_unknown_clients_are_refused():
    with oidc_provider(user=USER) as idp:
        code = _authorize(idp, "right-verifier-" * 4)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "wrong-verifier-" * 4,
        }
        status, body = _post(f"{idp.issuer}/token", form, (idp.client_id, idp.client_secret))
        assert status == 400 and body["error"] == "invalid_grant"
        status, _, _ = _get(f"{idp.issuer}/authorize?client_id=other&redirect_uri={REDIRECT}")
        assert status == 400
    assert idp.logins == 0


@pytest.mark.parametrize("state", [None, "s-9"])
def test_logout_returns_to_the_relying_party(state):
    with oidc_provider(user=USER) as idp:
        query = {"post_logout_redirect_uri": REDIRECT, **({"state": state} if state else {})}
        status, headers, _ = _get(f"{idp.issuer}/logout?{urlencode(query)}")
    assert status == 302 and headers["Location"].startswith(REDIRECT)
    assert (f"state={state}" in headers["Location"]) == bool(state)
    assert idp.logouts == 1
