"""The HTTP session each client uses for its one server: the environment read once.

`requests` reads the environment (proxy variables, NO_PROXY, CA bundles, .netrc) again for
every request it sends; with thousands of requests that costs more CPU than everything else
the worker does. A client talks to one server, so its proxy and CA bundle are settled when the
session is made: proxies from HTTP(S)_PROXY/NO_PROXY for that server's URL, and the CA bundle
from REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when certificates are verified. Verification off
stays off in every environment (with a session-level `verify` alone, `requests` lets those
variables switch it back on).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import requests
from requests.utils import get_environ_proxies


class ServerSession(requests.Session):
    """A `requests` session for the server at `base_url` (see the module docstring).

    `verify`: check the server's TLS certificate. Unverified https raises no warning per
    request when verification is off on purpose (it would reach Stash's log as errors).
    """

    def __init__(self, base_url: str, verify: bool = True) -> None:
        super().__init__()
        self.proxies.update(get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.verify = (bundle or True) if verify else False
        self.trust_env = False

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        """`requests.Session.request`, quiet about unverified https when verification is off."""
        if self.verify is not False:
            return super().request(*args, **kwargs)
        from urllib3.exceptions import InsecureRequestWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            return super().request(*args, **kwargs)
