"""The SessionService servicer: thin; the work is in `sessions.py`, shapes in `convert.py`."""

from __future__ import annotations

from typing import Any

from runtime_gateway.v1 import sessions_pb2, sessions_pb2_grpc
from runtime_gateway_server import convert, sessions
from runtime_gateway_server.credentials import CallCredentials
from runtime_gateway_server.errors import invalid_argument
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.servicers import Gateway
from runtime_gateway_server.upstream import Deadline


def _max_ttl_seconds(request: sessions_pb2.CreateSessionRequest) -> int:
    if not request.HasField("max_ttl"):
        return 0
    ttl = request.max_ttl
    if ttl.nanos or not 0 < ttl.seconds <= sessions.MAX_TTL_SECONDS:
        raise invalid_argument(
            "max_ttl", f"must be whole seconds from 1 to {sessions.MAX_TTL_SECONDS} (8 hours)"
        )
    return int(ttl.seconds)


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    @staticmethod
    def _session(
        client: AccountClient, data: dict[str, Any], deadline: Deadline, instance: str = ""
    ) -> sessions_pb2.Session:
        """The session; on cloud channels its instance is the account's (the CRN the call
        went to). IBM's session object names no instance, so on ibm_quantum only the one a
        CreateSession named is known."""
        if not instance and not client.legacy:
            instance = client.instance(deadline)
        return convert.session(data, instance)

    async def CreateSession(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> sessions_pb2.CreateSessionResponse:
            mode = convert.SESSION_MODE_NAMES.get(request.mode, sessions.DEDICATED)
            ttl = _max_ttl_seconds(request)
            client = self.g.client(creds)
            data = sessions.create(client, request.backend, mode, ttl, request.instance, deadline)
            instance = request.instance if client.legacy else ""
            return sessions_pb2.CreateSessionResponse(
                session=self._session(client, data, deadline, instance)
            )

        return await self.g.call(context, "CreateSession", work)

    async def GetSession(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> sessions_pb2.GetSessionResponse:
            client = self.g.client(creds)
            data = sessions.get(client, request.session_id, deadline)
            return sessions_pb2.GetSessionResponse(session=self._session(client, data, deadline))

        return await self.g.call(context, "GetSession", work)

    async def CloseSession(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> sessions_pb2.CloseSessionResponse:
            client = self.g.client(creds)
            data = sessions.close(client, request.session_id, deadline)
            return sessions_pb2.CloseSessionResponse(session=self._session(client, data, deadline))

        return await self.g.call(context, "CloseSession", work)

    async def CancelSession(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> sessions_pb2.CancelSessionResponse:
            client = self.g.client(creds)
            data = sessions.cancel(client, request.session_id, deadline)
            return sessions_pb2.CancelSessionResponse(session=self._session(client, data, deadline))

        return await self.g.call(context, "CancelSession", work)

    async def GetUsage(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> sessions_pb2.GetUsageResponse:
            instance, data = sessions.usage(self.g.client(creds), deadline)
            return convert.usage(instance, data)

        return await self.g.call(context, "GetUsage", work)
