"""Routes of the account-side services: IAM, Global Search and Catalog, Resource
Controller (IBM Cloud) and the legacy IBM Quantum auth API (`ibm_quantum`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from runtime_gateway_local.auth import unauthorized
from runtime_gateway_local.http import HttpError, Request, Response, Router
from runtime_gateway_local.jobs import now_iso

if TYPE_CHECKING:
    from runtime_gateway_local.runtime import LocalRuntime

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def add_routes(router: Router, rt: LocalRuntime) -> None:
    # --- IAM ----------------------------------------------------------------------------
    def iam_token(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != APIKEY_GRANT:
            raise HttpError(
                400,
                "Operation not supported: unsupported grant_type.",
                body={
                    "errorCode": "BXNIM0109E",
                    "errorMessage": f"grant_type must be {APIKEY_GRANT}.",
                    "context": {"requestId": request.header("x-request-id", "")},
                },
            )
        principal = rt.authenticator.principal_for_api_key(form.get("apikey", ""))
        if principal is None:
            raise HttpError(
                400,
                "Provided API key could not be found.",
                body={
                    "errorCode": "BXNIM0415E",
                    "errorMessage": "Provided API key could not be found.",
                    "context": {"requestId": request.header("x-request-id", "")},
                },
            )
        token, issued, expires = rt.authenticator.issue_jwt(principal)
        return Response.json(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": expires - issued,
                "expiration": expires,
                "scope": "ibm openid",
            }
        )

    router.add("iam", "POST", "/identity/token", iam_token)

    # --- Global Search / Global Catalog / Resource Controller ---------------------------
    def search(request: Request) -> Response:
        rt.authenticator.authenticate(request)
        items = [inst.search_item() for inst in rt.instances.cloud]
        return Response.json({"items": items, "limit": 100})

    def catalog_entry(request: Request) -> Response:
        plan_id = request.params["plan_id"]
        for inst in rt.instances.cloud:
            if inst.plan_id == plan_id:
                return Response.json(
                    {
                        "id": plan_id,
                        "name": inst.plan.lower(),
                        "overview_ui": {"en": {"display_name": inst.plan}},
                        "metadata": {"pricing": {"type": inst.pricing_type}},
                    }
                )
        raise HttpError(404, f"No catalog entry {plan_id}.")

    def resource_instances(request: Request) -> Response:
        rt.authenticator.authenticate(request)
        name = request.arg("name")
        found = [i for i in rt.instances.cloud if name is None or i.name == name]
        return Response.json(
            {
                "rows_count": len(found),
                "resources": [i.resource_instance() for i in found],
            }
        )

    def resource_instance(request: Request) -> Response:
        # IBM Cloud's lookup by id: the SDK (and ResourceControllerV2.get_resource_instance)
        # passes the CRN, URL-encoded, as the id; a GUID works too.
        rt.authenticator.authenticate(request)
        key = unquote(request.params["instance_id"])
        inst = rt.instances.lookup(key)
        if inst is None:
            raise HttpError(
                404,
                "Instance not found",
                body={
                    "message": f"Instance with id {key} not found",
                    "status_code": 404,
                    "error_code": "RC-ResourceInstanceNotFound",
                    "transaction_id": request.header("transaction-id", ""),
                },
            )
        return Response.json(inst.resource_instance())

    router.add("search", "POST", "/v3/resources/search", search)
    router.add("catalog", "GET", "/api/v1/{plan_id}", catalog_entry)
    router.add("rc", "GET", "/v2/resource_instances", resource_instances)
    router.add("rc", "GET", "/v2/resource_instances/{instance_id}", resource_instance)

    # --- Legacy IBM Quantum auth (the 0.21 `ibm_quantum` channel) ------------------------
    def version(_: Request) -> Response:
        return Response.json({"api-auth": "1.0.0"})

    def login(request: Request) -> Response:
        body = request.json()
        token = body.get("apiToken") if isinstance(body, dict) else None
        principal = (
            rt.authenticator.principal_for_api_key(token) if isinstance(token, str) else None
        )
        if principal is None:
            raise HttpError(
                401,
                "Login failed.",
                body={
                    "error": {
                        "name": "LOGIN_FAILED",
                        "statusCode": 401,
                        "message": "Login failed.",
                        "code": "LOGIN_FAILED",
                    }
                },
            )
        return Response.json(
            {
                "id": rt.authenticator.issue_access_token(principal),
                "ttl": rt.authenticator.token_ttl_seconds,
                "created": now_iso(),
                "userId": principal.user_id,
            }
        )

    def me(request: Request) -> Response:
        if not request.header("x-access-token"):
            raise unauthorized("Authentication is required: no X-Access-Token header.")
        principal = rt.authenticator.authenticate(request)
        base = f"http://{request.header('host') or request.host}"
        return Response.json(
            {
                "userId": principal.user_id,
                "email": f"{principal.user_id}@local-runtime.invalid",
                "urls": {
                    "http": f"{base}/api",
                    "ws": f"ws://{request.header('host') or request.host}/ws",
                    "services": {"runtime": f"{base}/runtime"},
                },
            }
        )

    def network(request: Request) -> Response:
        rt.authenticator.authenticate(request)
        hubs: dict[str, dict] = {}
        for index, hgp in enumerate(rt.instances.hgps):
            hub, group, project = hgp.split("/")
            groups = hubs.setdefault(hub, {"name": hub, "groups": {}})["groups"]
            projects = groups.setdefault(group, {"name": group, "projects": {}})["projects"]
            projects[project] = {"name": project, "isDefault": index == 0}
        return Response.json(list(hubs.values()))

    router.add("auth", "GET", "/version", version)
    router.add("auth", "POST", "/users/loginWithToken", login)
    router.add("auth", "GET", "/users/me", me)
    router.add("auth", "GET", "/Network", network)
