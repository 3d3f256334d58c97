"""The gRPC servicers: metadata → account, protobuf ↔ domain, errors → status codes.

Each RPC resolves the caller's account, runs the (blocking, `requests`-based) domain call
in a bounded thread pool, converts the result, and logs one line.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
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
from runtime_gateway_server import convert, results
from runtime_gateway_server.accounts import DEFAULT_NAMES, Account, AccountRegistry
from runtime_gateway_server.backends import BackendDirectory, BackendFilter, parse_attributes
from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.credentials import (
    REQUEST_ID,
    AccountResolver,
    CallCredentials,
    from_metadata,
)
from runtime_gateway_server.errors import GatewayError, invalid_argument, to_status
from runtime_gateway_server.ibm import AccountClient, ClientPool, check_account
from runtime_gateway_server.idempotency import Admission
from runtime_gateway_server.jobs import JobOperations, ListRequest, RunRequest
from runtime_gateway_server.metrics import HEARTBEATS, OPEN_STREAMS, UPDATES_DELIVERED
from runtime_gateway_server.paging import PageTokens
from runtime_gateway_server.redis_link import RedisLink
from runtime_gateway_server.upstream import Deadline
from runtime_gateway_server.watch import (
    Subscriber,
    WatchHub,
    check_watch_job,
    check_watch_jobs,
)

log = structlog.get_logger("runtime_gateway_server.rpc")
T = TypeVar("T")


def _request_id(context: grpc.aio.ServicerContext, creds: CallCredentials) -> str:
    """The caller's `x-request-id`, or a new one; echoed in the trailing metadata so a caller
    can quote it when asking about a call (it is on the call's log line)."""
    request_id = creds.request_id or uuid.uuid4().hex[:16]
    context.set_trailing_metadata(((REQUEST_ID, request_id),))
    return request_id


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
        default_factory=lambda: TTLCache(300.0, max_entries=10_000, name="accounts")
    )
    # The fleet's Redis (`serve --redis-url`), or None: one gateway's state stays in-process.
    redis: RedisLink | None = None

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
            request_id = _request_id(context, creds)
            log.info(
                "rpc",
                method=method,
                code="OK",
                ms=round((time.perf_counter() - started) * 1000, 3),
                request_id=request_id,
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
        request_id = ""
        try:
            try:
                creds = from_metadata(context.invocation_metadata())
            finally:
                request_id = _request_id(context, creds)
            deadline = Deadline.after(context.time_remaining())
            loop = asyncio.get_running_loop()
            # The call's context (its trace span) goes with it into the worker thread.
            run = contextvars.copy_context().run
            result: T = await loop.run_in_executor(self.executor, run, work, creds, deadline)
            return result
        except GatewayError as error:
            code = error.code
            status = to_status(error)
            await context.abort(
                status.code, status.details, (*status.trailing_metadata, (REQUEST_ID, request_id))
            )
            raise  # unreachable: abort raises
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client left, or the gateway is stopping
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc_failed", method=method, request_id=request_id)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                "internal error in the gateway",
                ((REQUEST_ID, request_id),),
            )
            raise
        finally:
            log.info(
                "rpc",
                method=method,
                code=code.name,
                ms=round((time.perf_counter() - started) * 1000, 2),
                request_id=request_id,
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
        check: Callable[[], None] | None = None,
    ) -> AsyncIterator[Any]:
        """A job-update stream: check the request (`check` raises GatewayError before any
        upstream call, the account's included), subscribe, relay updates (heartbeats when
        idle), and always unsubscribe, whether the job ended, the client left, an upstream
        error ended it or the gateway shuts down (which also interrupts the subscribing)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        creds = CallCredentials()
        sent = 0
        request_id = ""
        open_streams = OPEN_STREAMS.labels(method)
        open_streams.inc()
        try:
            try:
                creds = from_metadata(context.invocation_metadata())
            finally:
                request_id = creds.request_id or uuid.uuid4().hex[:16]
                await context.send_initial_metadata(((REQUEST_ID, request_id),))
            if check is not None:
                check()
            self.watch.register(sub)
            loop = asyncio.get_running_loop()
            instance = ""  # as GetJob fills it when IBM's job does not name it

            def instance_of(client: AccountClient) -> str:
                try:
                    return client.instance(Deadline.after(30))
                except GatewayError:
                    return ""  # best effort: the job's own fields still go out

            async def attach() -> None:
                nonlocal instance
                client = await loop.run_in_executor(self.executor, self.client, creds)
                await subscribe(client, sub)
                instance = await loop.run_in_executor(self.executor, instance_of, client)

            await sub.until_closed(attach())
            async for update in sub.updates(self.watch.settings.heartbeat_seconds):
                key = (wrap, bool(update.result_json), instance)
                message = update.responses.get(key)
                if message is None and update.result_json:
                    # Decoding a result (typed counts) can take a while: off the event loop,
                    # once, shared by every subscriber that asked for it.
                    built = loop.run_in_executor(
                        self.executor, _build_update, wrap, update, instance
                    )
                    update.responses[key] = built
                    message = await asyncio.shield(built)
                    update.responses[key] = message
                elif message is None:  # built once per update, not once per subscriber
                    message = update.responses[key] = _build_update(wrap, update, instance)
                elif isinstance(message, asyncio.Future):
                    message = await asyncio.shield(message)
                yield message
                sent += 1
                UPDATES_DELIVERED.labels(update.kind).inc()
                if update.kind == "heartbeat":
                    HEARTBEATS.inc()
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
            open_streams.dec()
            self.watch.unsubscribe(sub)
            log.info(
                "rpc",
                method=method,
                code=code.name,
                ms=round((time.perf_counter() - started) * 1000, 2),
                updates=sent,
                request_id=request_id,
                account=creds.account_name,
                channel=creds.channel or ("token" if creds.token else "local"),
            )


def _build_update(wrap: Callable[..., Any], update: Any, instance: str) -> Any:
    return wrap(update=convert.job_update(update, instance))


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


def _fingerprint(message: Any) -> str:
    """A message's filter fields as a stable string (for binding page tokens to them)."""
    return str(message.SerializeToString(deterministic=True).hex())


@dataclass
class _NamePages:
    """Name-ordered paging for small lists (backends, accounts, instances by position).
    Tokens are signed and bound to `filters` (the RPC and its filter fields); `start`
    checks the request's paging before any upstream call."""

    tokens: PageTokens
    bound: str
    size: int
    last: str | None

    @classmethod
    def start(
        cls, tokens: PageTokens, filters: dict[str, Any], page_size: int, page_token: str
    ) -> _NamePages:
        if page_size < 0:
            raise invalid_argument("page_size", "must not be negative")
        bound = tokens.filters_hash(filters)
        last = tokens.decode_after(page_token, bound) if page_token else None
        return cls(tokens, bound, page_size, last)

    def take(self, items: list[Any], key: Callable[[Any], str]) -> tuple[list[Any], str]:
        if self.last is not None:
            items = [i for i in items if key(i) > self.last]
        if not self.size or len(items) <= self.size:
            return items, ""
        return items[: self.size], self.tokens.encode_after(self.bound, key(items[self.size - 1]))


class BackendServicer(backends_pb2_grpc.BackendServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    async def ListBackends(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> backends_pb2.ListBackendsResponse:
            where = _backend_filter(request.filter)
            filters = {
                "rpc": "ListBackends",
                "filter": _fingerprint(request.filter),
                "account": self.g.resolve(creds).key,  # a token is good for its account only
            }
            pages = _NamePages.start(
                self.g.jobs.tokens, filters, request.page_size, request.page_token
            )
            found = self.g.backends.list(self.g.client(creds), where, deadline)
            page, token = pages.take(found, lambda b: b.name)
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
        admission: Admission | None = None
        if run.request_id:
            # A retry of an id that is being submitted waits here, on the event loop: it holds
            # no upstream thread while it waits.
            try:
                account = self.g.resolve(from_metadata(context.invocation_metadata()))
                deadline = Deadline.after(context.time_remaining())
                admission = await self.g.jobs.admit(account.key, run, deadline)
            except GatewayError as error:
                refused = error

                def fail(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.RunJobResponse:
                    raise refused  # answered and logged like any other error

                return await self.g.call(context, "RunJob", fail)

        def work(creds: CallCredentials, deadline: Deadline) -> jobs_pb2.RunJobResponse:
            client = self.g.client(creds)
            data, replayed = self.g.jobs.run(client, run, deadline, admission)
            return jobs_pb2.RunJobResponse(job=self._job(client, data, deadline), replayed=replayed)

        try:
            return await self.g.call(context, "RunJob", work)
        finally:
            if admission is not None and admission.drop():  # ended before `work` took it up
                await self.g.jobs.ids.release_unused(admission)

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
            options = request.result_options
            if (options.counts or options.int_counts) and not options.typed:
                raise invalid_argument(
                    "result_options.typed", "must be set for counts or int_counts"
                )
            text = self.g.jobs.result(self.g.client(creds), request.job_id, deadline)
            response = jobs_pb2.GetJobResultResponse(result_json=text)
            if options.typed:
                response.typed_result.CopyFrom(
                    results.decode(text, counts=options.counts, int_counts=options.int_counts)
                )
            return response

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
        def check() -> None:
            check_watch_job(request.job_id, request.resume_after_revision, request.resume_epoch)

        async def subscribe(client: AccountClient, sub: Subscriber) -> None:
            await self.g.watch.subscribe(
                client, request.job_id, sub, request.resume_after_revision, request.resume_epoch
            )

        sub = Subscriber(request.include_result, request.include_interim, single_job=True)
        async for response in self.g.stream(
            context, "WatchJob", sub, subscribe, jobs_pb2.WatchJobResponse, check
        ):
            yield response

    async def WatchJobs(self, request, context):
        filtered = bool(request.tags or request.session_id or request.backend)
        # The filter IBM would be blamed for if it rejects the list query.
        filter_field = next(
            name
            for name, value in (
                ("tags", request.tags),
                ("session_id", request.session_id),
                ("backend", request.backend),
                ("tags", True),
            )
            if value
        )

        def check() -> None:
            check_watch_jobs(
                list(request.job_ids), list(request.tags), request.session_id, request.backend,
                dict(request.resume_after_revisions), dict(request.resume_epochs),
            )  # fmt: skip

        async def subscribe(client: AccountClient, sub: Subscriber) -> None:
            resume = dict(request.resume_after_revisions)
            epochs = dict(request.resume_epochs)
            for job_id in dict.fromkeys(request.job_ids):
                await self.g.watch.subscribe(
                    client, job_id, sub, resume.get(job_id, 0), epochs.get(job_id, "")
                )
            if filtered:
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

                self.g.watch.spawn(
                    self.g.watch.discover(
                        client, sub, candidates, resume, filter_field, epochs, filter_key
                    ),
                    owner=sub,
                )

        # Streams with the same filter share one discovery in a fleet (tags in any order).
        filter_key = _fingerprint(
            jobs_pb2.WatchJobsRequest(
                tags=sorted(request.tags), session_id=request.session_id, backend=request.backend
            )
        )
        sub = Subscriber(request.include_result, False, single_job=False)
        async for response in self.g.stream(
            context, "WatchJobs", sub, subscribe, jobs_pb2.WatchJobsResponse, check
        ):
            yield response


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    async def SaveAccount(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.SaveAccountResponse:
            key = self.g.registry.key_for(creds.api_key)
            acct = convert.account_from_proto(request.account).with_defaults()
            acct.validate(prefix="account")
            # Refused now rather than at its first use: an account this gateway may never
            # contact is a mistake the caller should hear about while saving it.
            check_account(acct, self.g.clients.http.allow, self.g.clients.local_base)
            saved = self.g.registry.file(key).save(acct, request.overwrite, request.set_as_default)
            return accounts_pb2.SaveAccountResponse(account=convert.account(saved))

        return await self.g.call(context, "SaveAccount", work)

    async def ListAccounts(self, request, context):
        def work(creds: CallCredentials, deadline: Deadline) -> accounts_pb2.ListAccountsResponse:
            key = self.g.registry.key_for(creds.api_key)
            filters = {
                "rpc": "ListAccounts",
                "key": key.key_id,
                "default": request.default if request.HasField("default") else None,
                "channel": request.channel,
                "name": request.name,
            }
            pages = _NamePages.start(
                self.g.jobs.tokens, filters, request.page_size or 100, request.page_token
            )
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
            page, token = pages.take(found, lambda a: a.name or "")
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
            # Positions in the account's instance list (IBM's order: the chosen one first).
            pages = _NamePages.start(
                self.g.jobs.tokens,
                {"rpc": "ListInstances", "account": self.g.resolve(creds).key},
                request.page_size,
                request.page_token,
            )
            start = 0
            if pages.last is not None:
                if not pages.last.isdigit():
                    raise invalid_argument("page_token", "is not a token this gateway issued")
                start = int(pages.last)
            client = self.g.client(creds)
            found = client.instances(deadline)
            if not found and not client.legacy and client.account.instance:
                from runtime_gateway_server.ibm import Instance

                found = [Instance(id=client.account.instance, is_default=True)]
            start = min(start, len(found))  # the list may have shrunk since the token
            end = start + request.page_size if request.page_size else len(found)
            token = pages.tokens.encode_after(pages.bound, str(end)) if end < len(found) else ""
            return accounts_pb2.ListInstancesResponse(
                instances=[convert.instance(i) for i in found[start:end]], next_page_token=token
            )

        return await self.g.call(context, "ListInstances", work)
