"""Sign-in through an OpenID Connect provider: authorization code flow with PKCE (S256), state and nonce.

`OidcClient.start` makes a random state, nonce and PKCE verifier, keeps them in the ephemeral store under
the state for `oidc.state_ttl_s` (any control-plane process sharing that store can finish the sign-in), and
returns the provider's authorization URL. `OidcClient.finish` takes the callback's parameters, spends the
state (a state works once; two callbacks racing with one state still share one authorization code, which
the provider redeems once), exchanges the code at the token endpoint (with the verifier, so a stolen code
is useless), and verifies the ID token against the provider's JWKS: signature (asymmetric algorithms
only), `iss`, `aud` (and `azp` when there are several audiences), `exp` and `nonce`. The identity is the
(issuer, subject) pair; an email address counts only when the provider says it is verified.

The discovery document is read once per process; the JWKS is cached and read again when a token names a
key it does not hold (the provider rotated its keys). Each request to the provider is a short-lived HTTP
client: sign-ins are rare, and nothing is left open between them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx
import jwt

from darktower.control.ephemeral import EphemeralStore
from darktower.control.store import ControlError
from darktower.core.config import OidcConfig

ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""ID-token signature algorithms accepted: asymmetric only (never `none`, never an HMAC keyed with public
data)."""
LEEWAY_S: Final = 60
"""Clock difference tolerated between this server and the provider."""
STATE_KEY_PREFIX: Final = "oidc-state:"


class OidcError(ControlError):
    """The sign-in was refused: the provider said no, or its answer does not prove who signed in."""


class OidcStateError(OidcError):
    """The callback's state is unknown, expired or already used."""


class OidcUnavailableError(ControlError):
    """The provider cannot be reached or answered something that is not OIDC."""


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    email: str | None
    """Lower-case; only an address the provider marked verified."""
    name: str
    """Printable, at most 64 characters; from `name`, `preferred_username` or the address."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of `verifier` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_id_token(
    token: str, keys: Sequence[Mapping[str, Any]], *, issuer: str, client_id: str, nonce: str, now: float
) -> dict[str, Any]:
    """The claims of `token` once its signature (by one of the JWKs `keys`), issuer, audience, expiry and
    nonce hold; OidcError.

    A KeyError (not an OidcError) means that no key of `keys` has the token's key id: the caller may read
    the JWKS again and retry."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise OidcError(f"ID token is malformed: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise OidcError(f"ID token is signed with {algorithm!r}, which is not accepted")
    key = _signing_key(keys, header.get("kid"), algorithm)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=client_id,
            issuer=issuer,
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "aud", "sub", "exp", "iat", "nonce"],
            },
        )
    except jwt.InvalidTokenError as exc:
        raise OidcError(f"ID token rejected: {exc}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("ID token has several audiences and its azp is not this client")
    expires_at = claims["exp"]
    if not isinstance(expires_at, int | float) or now > expires_at + LEEWAY_S:
        raise OidcError("ID token has expired")
    if not isinstance(claims["nonce"], str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise OidcError("ID token nonce does not match this sign-in")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise OidcError("ID token has no subject")
    return claims


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """The (verified) identity of checked ID-token claims."""
    email = claims.get("email")
    verified = claims.get("email_verified") is True
    address = email.lower() if isinstance(email, str) and email and verified else None
    name = next(
        (
            cleaned
            for candidate in (claims.get("name"), claims.get("preferred_username"), address)
            if isinstance(candidate, str) and (cleaned := _printable(candidate))
        ),
        "user",
    )
    return Identity(issuer=claims["iss"], subject=claims["sub"], email=address, name=name)


class OidcClient:
    def __init__(
        self,
        config: OidcConfig,
        ephemeral: EphemeralStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._ephemeral = ephemeral
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._keys: list[dict[str, Any]] | None = None

    @property
    def state_ttl_s(self) -> int:
        return self._config.state_ttl_s

    async def start(self, *, login_hint: str | None = None) -> tuple[str, str]:
        """The provider's authorization URL for a new sign-in (suggesting the account `login_hint`), and
        its state."""
        metadata = await self._provider()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        key = STATE_KEY_PREFIX + state
        slot = await self._ephemeral.cache_get(key)
        pending = json.dumps({"nonce": nonce, "verifier": verifier}).encode()
        await self._ephemeral.cache_fill(key, pending, version=slot.version, ttl_s=self._config.state_ttl_s)
        parameters = {
            "response_type": "code",
            "client_id": self._config.client_id,
            "redirect_uri": self._config.redirect_uri,
            "scope": self._config.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            parameters["login_hint"] = login_hint
        query = urlencode(parameters)
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}", state

    async def finish(
        self, *, state: str, code: str | None, error: str | None, issuer: str | None
    ) -> Identity:
        """The identity that signed in; OidcStateError, OidcError, OidcUnavailableError.

        `error` is the callback's `error` parameter (the provider refused), `issuer` its `iss` parameter
        (RFC 9207), compared when the provider sends it."""
        key = STATE_KEY_PREFIX + state
        pending = (await self._ephemeral.cache_get(key)).value
        if pending is None:
            raise OidcStateError("this sign-in is unknown, expired or already finished; start again")
        await self._ephemeral.cache_invalidate(key)
        if error is not None:
            raise OidcError(f"the provider refused the sign-in: {_printable(error)}")
        if issuer is not None and issuer != self._config.issuer:
            raise OidcError("the callback comes from another issuer than the configured one")
        if not code:
            raise OidcError("the callback carries no authorization code")
        saved = json.loads(pending)
        id_token = await self._exchange(code, saved["verifier"])
        claims = await self._verify(id_token, saved["nonce"])
        return identity_from_claims(claims)

    async def _exchange(self, code: str, verifier: str) -> str:
        metadata = await self._provider()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_uri,
            "code_verifier": verifier,
        }
        auth: tuple[str, str] | None = None
        if self._config.client_secret:
            # RFC 6749 2.3.1: both are form-encoded before they go into the Basic credentials.
            auth = (quote(self._config.client_id, safe=""), quote(self._config.client_secret, safe=""))
        else:
            form["client_id"] = self._config.client_id
        response = await self._request("POST", metadata.token_endpoint, data=form, auth=auth)
        body = _json_object(response, "token endpoint")
        if response.status_code != 200:
            if response.status_code == 400 and isinstance(body.get("error"), str):
                raise OidcError(f"the provider refused the authorization code: {body['error']}")
            raise OidcUnavailableError(f"the token endpoint answered {response.status_code}")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token endpoint returned no ID token")
        return id_token

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = self._keys if self._keys is not None else await self._fetch_keys()
        try:
            return self._check(id_token, keys, nonce)
        except KeyError:
            pass  # the provider may have rotated its keys since they were read
        try:
            return self._check(id_token, await self._fetch_keys(), nonce)
        except KeyError:
            raise OidcError("ID token is signed with a key the provider does not publish") from None

    def _check(self, id_token: str, keys: list[dict[str, Any]], nonce: str) -> dict[str, Any]:
        return verify_id_token(
            id_token,
            keys,
            issuer=self._config.issuer,
            client_id=self._config.client_id,
            nonce=nonce,
            now=self._clock(),
        )

    async def _provider(self) -> ProviderMetadata:
        if self._metadata is None:
            url = self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await self._request("GET", url)
            document = _json_object(response, "discovery document")
            fields = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if response.status_code != 200 or not all(isinstance(document.get(f), str) for f in fields):
                raise OidcUnavailableError(f"{url} is not an OpenID Provider discovery document")
            if document["issuer"] != self._config.issuer:
                raise OidcUnavailableError(
                    f"the provider calls itself {document['issuer']!r}, not {self._config.issuer!r}"
                )
            self._metadata = ProviderMetadata(**{f: document[f] for f in fields})
        return self._metadata

    async def _fetch_keys(self) -> list[dict[str, Any]]:
        metadata = await self._provider()
        response = await self._request("GET", metadata.jwks_uri)
        document = _json_object(response, "JWKS")
        keys = document.get("keys")
        if response.status_code != 200 or not isinstance(keys, list):
            raise OidcUnavailableError(f"{metadata.jwks_uri} is not a JWK set")
        self._keys = [key for key in keys if isinstance(key, dict)]
        return self._keys

    async def _request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._config.http_timeout_s) as http:
                return await http.request(method, url, data=data, auth=auth)
        except httpx.HTTPError as exc:
            raise OidcUnavailableError(f"cannot reach the provider at {url}: {exc}") from None


def _signing_key(keys: Sequence[Mapping[str, Any]], key_id: object, algorithm: str) -> Any:
    """The public key of the JWK that signed a token (`kid` `key_id`, or the only signing key when the
    token names none); KeyError when there is no such JWK."""
    signing = [key for key in keys if key.get("kty") != "oct" and key.get("use", "sig") == "sig"]
    if key_id is None and len(signing) == 1:
        chosen = signing[0]
    else:
        matching = [key for key in signing if key.get("kid") == key_id]
        if not matching:
            raise KeyError(key_id)
        chosen = matching[0]
    if chosen.get("alg", algorithm) != algorithm:
        raise OidcError(f"ID token is signed with {algorithm} but its key is for {chosen['alg']}")
    try:
        return jwt.PyJWK(dict(chosen), algorithm=algorithm).key
    except jwt.PyJWTError as exc:
        raise OidcError(f"the provider's key {key_id!r} is unusable for {algorithm}: {exc}") from None


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise OidcUnavailableError(
            f"the provider's {what} answered {response.status_code} without a JSON object"
        )
    return body


def _printable(text: str) -> str:
    return "".join(char for char in text if unicodedata.category(char)[0] != "C").strip()[:64]
