"""The gRPC servicers: metadata → account, protobuf ↔ domain, errors → status codes.

Each RPC resolves the caller's account, runs the (blocking, `requests`-based) domain call
in a bounded thread pool, converts the result, and logs one line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC as _UTC
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
import structlog

from runtime_gateway.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    backends_pb2,
    backends_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)
from runtime_gateway_server import convert
from runtime_gateway_server.accounts import DEFAULT_NAMES, Account, AccountRegistry
from runtime_gateway_server.backends import BackendDirectory, BackendFilter, parse_attributes
from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.credentials import (
    AccountResolver,
    CallCredentials,
    decode_page,
    encode_page,
    from_metadata,
)
from runtime_gateway_server.errors import GatewayError, invalid_argument, to_status
from runtime_gateway_server.ibm import AccountClient, ClientPool
from runtime_gateway_server.jobs import JobOperations, ListRequest, RunRequest
from runtime_gateway_server.upstream import Deadline
from runtime_gateway_server.watch import Subscriber, WatchHub

log = structlog.get_logger("runtime_gateway_server.rpc")
T = TypeVar("T")


@dataclass
class Gateway:
    """Everything the servicers share."""

    resolver: AccountResolver
    registry: AccountRegistry
    clients: ClientPool
    backends: BackendDirectory
    jobs: JobOperations
    executor: ThreadPoolExecutor
    watch: WatchHub
    # Answers of backend reads, per account and request, for at most the status TTL:
    # a hit is served on the event loop, without a thread hop or any conversion.
    answers: TTLCache[Any] = field(default_factory=lambda: TTLCache(2.0, max_entries=10_000))
    _resolved: TTLCache[Account] = field(
        default_factory=lambda: TTLCache(300.0, max_entries=10_000)
    )

    def resolve(self, creds: CallCredentials) -> Account:
        """The call's account; resolutions that depend on the metadata alone are memoized
        (server-held accounts are read every time, so a deletion takes effect at once)."""
        if creds.account_name:
            return self.resolver.resolve(creds)
        key = (creds.token, creds.channel, creds.instance, creds.url)
        return self._resolved.get_or_load(key, lambda: self.resolver.resolve(creds))

    async def cached(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        request: Any,
        work: Callable[[CallCredentials, Deadline], T],
    ) -> T:
        """`call`, with the answer kept for a short time per account and request."""
        started = time.perf_counter()
        try:
            creds = from_metadata(context.invocation_metadata())
            key = (method, self.resolve(creds).key, request.SerializeToString(deterministic=True))
        except GatewayError:
            return await self.call(context, method, work)  # reports the error as usual
        hit = self.answers.peek(key)
        if hit is not None:
            log.info(
                "rpc",
                method=method,
                code="OK",
                ms=round((time.perf_counter() - started) * 1000, 3),
                request_id=creds.request_id or None,
                account=creds.account_name,
                channel=creds.channel or ("token" if creds.token else "local"),
                cached=True,
            )
            result: T = hit
            return result
        answer = await self.call(context, method, work)
        self.answers.put(key, answer)
        return answer

    async def call(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        work: Callable[[CallCredentials, Deadline], T],
    ) -> T:
        """Runs `work` off the event loop; logs the call; turns GatewayError into a status."""
        started = time.perf_counter()
        creds = CallCredentials()
        code = grpc.StatusCode.OK
        try:
            creds = from_metadata(context.invocation_metadata())
            deadline = Deadline.after(context.time_remaining())
            loop = asyncio.get_running_loop()
            result: T = await loop.run_in_executor(self.executor, work, creds, deadline)
            return result
        except GatewayError as error:
            code = error.code
            status = to_status(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise  # unreachable: abort raises
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc_failed", method=method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the gateway")
            raise
        finally:
            log.info(
                "rpc",
                method=method,
                code=code.name,
                ms=round((time.perf_counter() - started) * 1000, 2),
                request_id=creds.request_id or None,
                account=creds.account_name,
                channel=creds.channel or ("token" if creds.token else "local"),
            )

    def client(self, creds: CallCredentials) -> AccountClient:
        return self.clients.client(self.resolve(creds))

    async def stream(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        sub: Subscriber,
        subscribe: Callable[[AccountClient, Subscriber], Awaitable[None]],
        wrap: Callable[..., Any],
    ) -> AsyncIterator[Any]:
        """A job-update stream: subscribe, relay updates (heartbeats when idle), and always
        unsubscribe, whether the job ended, the client left or the gateway shuts down."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        creds = CallCredentials()
        sent = 0
        try:
            creds = from_metadata(context.invocation_metadata())
            loop = asyncio.get_running_loop()
            client = await loop.run_in_executor(self.executor, self.client, creds)
            await subscribe(client, sub)
            async for update in sub.updates(self.watch.settings.heartbeat_seconds):
                key = (wrap, bool(update.result_json))
                message = update.responses.get(key)
                if message is None:  # built once per update, not once per subscriber
                    message = update.responses[key] = wrap(update=convert.job_update(update))
                yield message
                sent += 1
            if sub.closed is not None:
                raise sub.closed
        except GatewayError as error:
            code = error.code
            status = to_status(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away
            raise
        finally:
            self.watch.unsubscribe(sub)
            log.info(
                "rpc",
                method=method,
                code=code.name,
                ms=round((time.perf_counter() - started) * 1000, 2),
                updates=sent,
                request_id=creds.request_id or None,
                account=creds.account_name,
                channel=creds.channel or ("token" if creds.token else "local"),
            )


def _backend_filter(message: backends_pb2.BackendFilter) -> BackendFilter:
    return BackendFilter(
        name=message.name,
        min_num_qubits=message.min_num_qubits,
        instance=message.instance,
        dynamic_circuits=message.dynamic_circuits if message.HasField("dynamic_circuits") else None,
        simulator=message.simulator if message.HasField("simulator") else None,
        operational=message.operational if message.HasField("operational") else None,
        attributes=parse_attributes(dict(message.attributes)),
    )


def _page(
    items: list[Any], page_size: int, page_token: str, key: Callable[[Any], str]
) -> tuple[list[Any], str]:
    """Name-ordered paging for small lists (backends, accounts, instances)."""
    if page_size < 0:
        raise invalid_argument("page_size", "must not be negative")
    if page_token:
        last = decode_page(page_token)
        items = [i for i in items if key(i) > last]
    if not page_size or len(items) <= page_size:
        return items, ""
    return items[:page_size], encode_page(key(items[page_size - 1]))


class BackendServicer(backends_pb2_grpc.BackendServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    async def ListBackends(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> backends_pb2.ListBackendsResponse:
            where = _backend_filter(request.filter)
            found = self.g.backends.list(self.g.client(creds), where, deadline)
            page, token = _page(found, request.page_size, request.page_token, lambda b: b.name)
            full = request.view == backends_pb2.BACKEND_VIEW_FULL
            return backends_pb2.ListBackendsResponse(
                backends=[convert.backend(b, full) for b in page], next_page_token=token
            )

        return await self.g.cached(context, "ListBackends", request, work)

    async def GetBackend(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> backends_pb2.GetBackendResponse:
            item = self.g.backends.get(
                self.g.client(creds), request.name, deadline, request.instance
            )
            full = request.view == backends_pb2.BACKEND_VIEW_FULL
            return backends_pb2.GetBackendResponse(backend=convert.backend(item, full))

        return await self.g.cached(context, "GetBackend", request, work)

    async def GetBackendStatus(self, request, context):
        def work(
            creds: CallCredentials, deadline: Deadline
        ) -> backends_pb2.GetBackendStatusResponse:
            status = self.g.backends.get_status(self.g.client(creds), request.name, deadline)
            return backends_pb2.GetBackendStatusResponse(status=convert.backend_status(status))

        return await self.g.cached(context, "GetBackendStatus", request, work)

    async def GetBackendProperties(self, request, context):
        def work(
            creds: CallCredentials, deadline: Deadline
        ) -> backends_pb2.GetBackendPropertiesResponse:
            if not request.name:
                raise invalid_argument("name", "is required")
            before = None
            if request.HasField("updated_before"):
                before = request.updated_before.ToDatetime().isoformat()
            found = self.g.backends.properties(self.g.client(creds), request.name, deadline, before)
            if found is None:
                return backends_pb2.GetBackendPropertiesResponse()
            return backends_pb2.GetBackendPropertiesResponse(
                properties=convert.backend_properties(*found)
            )

        return await self.g.call(context, "GetBackendProperties", work)

    async def GetLeastBusyBackend(self, request, context):
        def work(
            creds: CallCredentials, deadline: Deadline
        ) -> backends_pb2.GetLeastBusyBackendResponse:
            item = self.g.backends.least_busy(
                self.g.client(creds), _backend_filter(request.filter), deadline
            )
            full = request.view == backends_pb2.BACKEND_VIEW_FULL
            return backends_pb2.GetLeastBusyBackendResponse(backend=convert.backend(item, full))

        return await self.g.call(context, "GetLeastBusyBackend", work)


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    def _job(
        self, client: AccountClient, data: dict[str, Any], deadline: Deadline, full: bool = False
    ) -> jobs_pb2.Job:
        message = convert.job(data, full)
        if not message.instance:
            message.instance = client.instance(deadline)
        return message

    async def RunJob(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.RunJobResponse:
            client = self.g.client(creds)
            run = RunRequest(
                program_id=request.program_id,
                inputs_json=request.inputs_json,
                backend=request.backend,
                session_id=request.session_id,
                start_session=request.start_session,
                session_time=request.session_time,
                tags=list(request.tags),
                log_level=request.log_level,
                max_execution_time=request.max_execution_time,
                image=request.image,
                private=request.private,
                instance=request.instance,
                channel_strategy=request.channel_strategy,
                request_id=request.request_id,
            )
            data, replayed = self.g.jobs.run(client, run, deadline)
            return jobs_pb2.RunJobResponse(job=self._job(client, data, deadline), replayed=replayed)

        return await self.g.call(context, "RunJob", work)

    async def GetJob(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.GetJobResponse:
            client = self.g.client(creds)
            full = request.view == jobs_pb2.JOB_VIEW_FULL
            data = self.g.jobs.get(client, request.job_id, full, deadline)
            return jobs_pb2.GetJobResponse(job=self._job(client, data, deadline, full))

        return await self.g.call(context, "GetJob", work)

    async def ListJobs(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.ListJobsResponse:
            client = self.g.client(creds)
            query = ListRequest(
                page_size=request.page_size,
                page_token=request.page_token,
                skip=request.skip,
                backend=request.backend,
                pending=request.pending if request.HasField("pending") else None,
                program_id=request.program_id,
                instance=request.instance,
                tags=list(request.tags),
                session_id=request.session_id,
                created_after=request.created_after.ToDatetime(tzinfo=_UTC)
                if request.HasField("created_after")
                else None,
                created_before=request.created_before.ToDatetime(tzinfo=_UTC)
                if request.HasField("created_before")
                else None,
                order_by=request.order_by,
            )
            page = self.g.jobs.list(client, query, deadline)
            return jobs_pb2.ListJobsResponse(
                jobs=[self._job(client, j, deadline) for j in page.jobs],
                next_page_token=page.next_page_token,
                total_size=page.total_size,
            )

        return await self.g.call(context, "ListJobs", work)

    async def DeleteJob(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.DeleteJobResponse:
            self.g.jobs.delete(self.g.client(creds), request.job_id, deadline)
            return jobs_pb2.DeleteJobResponse()

        return await self.g.call(context, "DeleteJob", work)

    async def CancelJob(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.CancelJobResponse:
            client = self.g.client(creds)
            data = self.g.jobs.cancel(client, request.job_id, deadline)
            return jobs_pb2.CancelJobResponse(job=self._job(client, data, deadline))

        return await self.g.call(context, "CancelJob", work)

    async def GetJobResult(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.GetJobResultResponse:
            text = self.g.jobs.result(self.g.client(creds), request.job_id, deadline)
            return jobs_pb2.GetJobResultResponse(result_json=text)

        return await self.g.call(context, "GetJobResult", work)

    async def GetJobLogs(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.GetJobLogsResponse:
            return jobs_pb2.GetJobLogsResponse(
                logs=self.g.jobs.logs(self.g.client(creds), request.job_id, deadline)
            )

        return await self.g.call(context, "GetJobLogs", work)

    async def GetJobMetrics(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.GetJobMetricsResponse:
            metrics, raw = self.g.jobs.metrics(self.g.client(creds), request.job_id, deadline)
            stamps = metrics.get("timestamps") or {}
            usage = metrics.get("usage") or {}
            return jobs_pb2.GetJobMetricsResponse(
                create_time=convert.timestamp(stamps.get("created")),
                run_time=convert.timestamp(stamps.get("running")),
                finish_time=convert.timestamp(stamps.get("finished")),
                usage_seconds=float(usage.get("quantum_seconds") or usage.get("seconds") or 0),
                metrics_json=raw,
            )

        return await self.g.call(context, "GetJobMetrics", work)

    async def UpdateJobTags(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.UpdateJobTagsResponse:
            client = self.g.client(creds)
            data = self.g.jobs.update_tags(client, request.job_id, list(request.tags), deadline)
            return jobs_pb2.UpdateJobTagsResponse(job=self._job(client, data, deadline))

        return await self.g.call(context, "UpdateJobTags", work)

    async def WatchJob(self, request, context):
        async def subscribe(client: AccountClient, sub: Subscriber) -> None:
            if not request.job_id:
                raise invalid_argument("job_id", "is required")
            if request.resume_after_revision < 0:
                raise invalid_argument("resume_after_revision", "must not be negative")
            await self.g.watch.subscribe(client, request.job_id, sub, request.resume_after_revision)

        sub = Subscriber(request.include_result, request.include_interim, single_job=True)
        async for response in self.g.stream(
            context, "WatchJob", sub, subscribe, jobs_pb2.WatchJobResponse
        ):
            yield response

    async def WatchJobs(self, request, context):
        async def subscribe(client: AccountClient, sub: Subscriber) -> None:
            if not (request.job_ids or request.tags or request.session_id or request.backend):
                raise invalid_argument(
                    "job_ids", "give job ids or at least one filter (tags, session_id, backend)"
                )
            resume = dict(request.resume_after_revisions)
            if any(r < 0 for r in resume.values()):
                raise invalid_argument("resume_after_revisions", "must not be negative")
            for job_id in dict.fromkeys(request.job_ids):
                await self.g.watch.subscribe(client, job_id, sub, resume.get(job_id, 0))
            if request.tags or request.session_id or request.backend:
                started = datetime.now(_UTC) - timedelta(seconds=2)

                def candidates(
                    c: AccountClient, deadline: Deadline, first: bool
                ) -> list[dict[str, Any]]:
                    query = ListRequest(
                        page_size=200, tags=list(request.tags), session_id=request.session_id,
                        backend=request.backend,
                        pending=True if first else None, created_after=None if first else started,
                    )  # fmt: skip
                    return self.g.jobs.list(c, query, deadline).jobs

                self.g.watch.spawn(self.g.watch.discover(client, sub, candidates, resume))

        sub = Subscriber(request.include_result, False, single_job=False)
        async for response in self.g.stream(
            context, "WatchJobs", sub, subscribe, jobs_pb2.WatchJobsResponse
        ):
            yield response


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    async def SaveAccount(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.SaveAccountResponse:
            key = self.g.registry.key_for(creds.api_key)
            acct = convert.account_from_proto(request.account).with_defaults()
            saved = self.g.registry.file(key).save(acct, request.overwrite, request.set_as_default)
            return accounts_pb2.SaveAccountResponse(account=convert.account(saved))

        return await self.g.call(context, "SaveAccount", work)

    async def ListAccounts(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.ListAccountsResponse:
            key = self.g.registry.key_for(creds.api_key)
            found = sorted(
                self.g.registry.file(key).accounts().values(), key=lambda a: a.name or ""
            )
            channel = convert.CHANNEL_FROM_PROTO.get(request.channel)
            defaults = set(DEFAULT_NAMES.values()) | {"default"}
            if request.HasField("default"):
                found = [a for a in found if (a.name in defaults) == request.default]
            if channel:
                found = [a for a in found if a.channel == channel]
            if request.name:
                found = [a for a in found if a.name == request.name]
            page, token = _page(
                found, request.page_size or 100, request.page_token, lambda a: a.name or ""
            )
            return accounts_pb2.ListAccountsResponse(
                accounts=[convert.account(a) for a in page], next_page_token=token
            )

        return await self.g.call(context, "ListAccounts", work)

    async def DeleteAccount(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.DeleteAccountResponse:
            key = self.g.registry.key_for(creds.api_key)
            name = request.name or DEFAULT_NAMES.get(
                convert.CHANNEL_FROM_PROTO.get(request.channel) or "ibm_quantum_platform", ""
            )
            return accounts_pb2.DeleteAccountResponse(
                deleted=self.g.registry.file(key).delete(name)
            )

        return await self.g.call(context, "DeleteAccount", work)

    async def GetActiveAccount(self, request, context):
        def work(
            creds: CallCredentials, deadline: Deadline
        ) -> accounts_pb2.GetActiveAccountResponse:
            return accounts_pb2.GetActiveAccountResponse(
                account=convert.account(self.g.resolver.resolve(creds))
            )

        return await self.g.call(context, "GetActiveAccount", work)

    async def VerifyAccount(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.VerifyAccountResponse:
            client = self.g.client(creds)
            chosen = client.instance(deadline)  # authenticates and resolves the instance
            instances = client.instances(deadline)
            if client.account.instance and chosen not in [i.id for i in instances]:
                raise GatewayError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "UPSTREAM_PERMISSION_DENIED",
                    f"the credentials have no access to the instance {chosen}",
                )
            self.g.backends.names(
                client, deadline
            )  # one runtime call proves the runtime accepts them
            match = next((i for i in instances if i.id == chosen), None)
            return accounts_pb2.VerifyAccountResponse(
                account=convert.account(client.account),
                instance=convert.instance(match) if match else accounts_pb2.Instance(id=chosen),
            )

        return await self.g.call(context, "VerifyAccount", work)

    async def ListInstances(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.ListInstancesResponse:
            client = self.g.client(creds)
            found = client.instances(deadline)
            if not found and not client.legacy and client.account.instance:
                from runtime_gateway_server.ibm import Instance

                found = [Instance(id=client.account.instance, is_default=True)]
            if request.page_size < 0:
                raise invalid_argument("page_size", "must not be negative")
            start = int(decode_page(request.page_token)) if request.page_token else 0
            end = start + request.page_size if request.page_size else len(found)
            token = encode_page(str(end)) if end < len(found) else ""
            return accounts_pb2.ListInstancesResponse(
                instances=[convert.instance(i) for i in found[start:end]], next_page_token=token
            )

        return await self.g.call(context, "ListInstances", work)
