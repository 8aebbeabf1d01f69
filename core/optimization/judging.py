"""Running a judge on labeled examples exactly as MLflow runs the registered judge.

A judge is built with ``mlflow.genai.judges.make_judge`` (name, instructions, model,
value type) and called as ``judge(inputs=..., outputs=..., expectations=...)``, so what we
score is what MLflow will later run. :class:`JudgeEvaluator` adds what an optimizer needs:

* parallel calls (``workers`` threads);
* a bounded, thread-safe cache keyed by (sha of the instructions, trace id, label version):
  no (candidate, example) pair is paid for twice. Failed verdicts are not cached, so a
  later evaluation tries again;
* per-example failures (429, 5xx, timeouts, unparseable answers) retried with exponential
  backoff, then returned as a failed :class:`Verdict` (``error`` set) - the run goes on;
* authentication failures (401/403, missing key) raise ``CredentialsError`` and stop all.

Trace judges. A judge whose instructions use ``{{ trace }}`` (MLflow's agent-as-judge) is
called as MLflow calls it, ``judge(inputs=..., outputs=..., trace=<Trace>)``, and reads the
spans through MLflow's judge tools. The evaluator loads each trace once
(:class:`core.optimization.trace_spans.TraceCache`: one ``batch_get_traces`` per round
for the traces it lacks, bounded) and hands the judge a copy without any feedback, so
the human label it is scored against cannot reach it through the tools. The verdict cache
key stays (instructions sha, trace id, label version): the trace is the trace id's.

Retries. MLflow retries judge calls itself (10 times, minutes of backoff). For judges that
reach the model through LiteLLM we switch MLflow's retries off with
``inference_params={"retry_policy": None, "num_retries": 0, "timeout": ...}`` on the
*evaluation* copy of the judge and retry ourselves, boundedly; LiteLLM's callback counts
every attempt (:mod:`core.models.usage`).

Routes. MLflow sends a judge to its own HTTP client (its "gateway" adapter) when MLflow's
gateway knows the provider (openai, anthropic, gemini...), else to LiteLLM. The gateway
client retries 429/5xx ten times with 1-30 s sleeps that nobody sees, times out only
after ``MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS`` (300 s) and sends ``inference_params`` in
the request body. So:

* a judge with a ``base_url`` (an OpenAI-compatible server) is *evaluated* through
  LiteLLM's OpenAI-compatible provider (:data:`COMPATIBLE_PROVIDER`) at that URL: same
  prompt, same structured output, same server, but with our bounded retries, timeout and
  failure counting. The judge an optimizer returns (and registers) is still the
  ``openai:/<model>`` judge with its ``base_url``. MLflow 3.17 does not serialize
  ``base_url``, so a judge loaded back from the registry no longer names the server: the
  registered version's metadata keeps it (``JudgeVersion.base_url``), scoring puts it in
  the spec, and the evaluator reroutes the loaded judge (or a MemAlign judge's base
  judge) on the spec's model to it;
* a gateway provider without a base URL keeps MLflow's route, without the LiteLLM-only
  ``inference_params`` (they would reach the provider as unknown request fields); we add
  no retries of our own there and count its calls with :func:`record_call`.

Structured output. MLflow's judge asks for ``response_format`` ``json_schema``, which many
local servers refuse (llama-cpp-python's answers HTTP 500). For a judge on a base URL the
evaluator recognises the refusal (:func:`core.models.structured.is_response_format_rejection`),
retries the same call with ``json_object``, then with no ``response_format`` at all, and
remembers per endpoint (model and base URL, process-wide) what works, so only the first
calls pay for it. The copy of the judge it evaluates overrides MLflow's ``response_format``
through ``inference_params`` (MLflow applies them last). In plain-text mode a reply MLflow
cannot parse as JSON is read by :func:`core.models.structured.parse_judge_reply` (a JSON
object inside prose, ``result: pass``, a leading value word); a reply that holds no value
of the judge's type is a failed call, never a guessed value.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

from core.errors import CredentialsError, NotFoundError, ValidationError
from core.models.secrets import redact, require_credentials
from core.models.structured import (
    MODES,
    SERVER_JUDGE_MAX_TOKENS,
    SERVER_JUDGE_TEMPERATURE,
    Gate,
    Mode,
    UnparseableReply,
    endpoint_gate,
    endpoint_mode,
    fall_back,
    is_response_format_rejection,
    parse_judge_reply,
    response_format_for,
)
from core.models.uris import parse_model
from core.models.usage import install_usage_tracking, record_call
from core.optimization.spec import TEMPLATE_VARIABLES, Example, JudgeSpec, ValueType
from core.optimization.trace_spans import TraceCache, uses_trace
from core.store import config

_log = logging.getLogger(__name__)

#: Cached verdicts kept at most (an LRU; each is a few hundred bytes).
DEFAULT_CACHE_ENTRIES = 100_000
#: LiteLLM's provider for "an OpenAI-compatible server at ``api_base``" (the OpenAI client,
#: the key from ``OPENAI_API_KEY``). MLflow's gateway does not claim it, so MLflow hands a
#: judge on it to LiteLLM.
COMPATIBLE_PROVIDER = "custom_openai"
_POSITIVE = {"pass", "passed", "yes", "true", "1", "good", "correct"}
#: How MLflow 3.17's LiteLLM judge adapter reports a reply that is not JSON; the reply
#: follows it (``Failed to parse response from judge model. Response: <text>``).
_UNPARSED_REPLY = "Failed to parse response from judge model. Response: "


@dataclass(frozen=True)
class Verdict:
    """What a judge said about one example."""

    value: Any
    """The judge's value (bool for pass/fail, str, float), or None when the call failed."""
    rationale: str | None
    """The judge's reasoning."""
    error: str | None = None
    """Why the call failed after retries (None on success)."""

    @property
    def ok(self) -> bool:
        """Whether the judge answered."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def instructions_key(instructions: str) -> str:
    """Stable short hash of judge instructions (the cache's candidate key)."""
    return hashlib.sha256(instructions.encode("utf-8")).hexdigest()[:24]


class VerdictCache:
    """Thread-safe LRU of verdicts keyed by (instructions sha, trace id, label version)."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, str, str], Verdict] = OrderedDict()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, str]) -> Verdict | None:
        """Return the cached verdict (counting a hit or a miss)."""
        with self._lock:
            verdict = self._data.get(key)
            if verdict is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return verdict

    def put(self, key: tuple[str, str, str], verdict: Verdict) -> None:
        """Store a successful verdict (failed ones are never cached)."""
        if not verdict.ok:
            return
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def to_json(self) -> list[list[Any]]:
        """Entries as JSON-ready rows (for resuming in another process)."""
        with self._lock:
            return [[*k, v.value, v.rationale] for k, v in self._data.items()]

    def load_json(self, rows: list[list[Any]]) -> None:
        """Add entries written by :meth:`to_json`."""
        for row in rows:
            if isinstance(row, list) and len(row) == 5:
                self.put((str(row[0]), str(row[1]), str(row[2])), Verdict(row[3], row[4]))

    def stats(self) -> dict[str, int]:
        """Hits, misses and size."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._data)}


def feedback_value_type(spec: JudgeSpec) -> Any:
    """The ``feedback_value_type`` MLflow gets for a judge's value type."""
    if spec.value_type == "pass_fail":
        return bool
    if spec.value_type == "numeric":
        return float
    if spec.options:
        # A Literal makes MLflow's structured output list the allowed categories.
        return Literal[tuple(spec.options)]
    return str


def build_judge(spec: JudgeSpec, instructions: str | None = None, **extra: Any) -> Any:
    """Build the MLflow judge for ``spec`` (optionally with other instructions).

    Args:
        spec: The judge.
        instructions: Instructions to use instead of ``spec.instructions``.
        **extra: More ``make_judge`` keyword arguments (e.g. ``inference_params``).

    Raises:
        ValidationError: MLflow refuses the instructions (e.g. an unknown template variable).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.genai.judges import make_judge

    config.configure()
    model = parse_model(spec.model, spec.base_url)
    try:
        return make_judge(
            name=spec.name,
            instructions=instructions if instructions is not None else spec.instructions,
            feedback_value_type=feedback_value_type(spec),
            **model.judge_kwargs(),
            **extra,
        )
    except MlflowException as exc:
        raise ValidationError(f"MLflow refused the judge instructions: {exc.message}") from None


def gateway_claims(model_uri: str) -> bool:
    """Whether MLflow sends a judge on ``model_uri`` to its own gateway HTTP client.

    MLflow picks its gateway adapter for every provider its gateway knows (and LiteLLM
    otherwise), whatever the judge's ``base_url``.
    """
    from mlflow.gateway.provider_registry import is_supported_provider

    provider = str(model_uri).partition(":/")[0]
    try:
        return bool(is_supported_provider(provider))
    except Exception:  # a registry that cannot answer: assume MLflow's default route
        return False


def normalize_value(value: Any, value_type: ValueType) -> Any:
    """A judge or label value in the canonical type of ``value_type``."""
    if value is None:
        return None
    if value_type == "pass_fail":
        if isinstance(value, bool):
            return value
        return str(value).strip().strip(".").lower() in _POSITIVE
    if value_type == "numeric":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value).strip()


def score(
    verdict: Verdict, example: Example, value_type: ValueType, value_range: float | None = None
) -> float:
    """Agreement of one verdict with the human label, in [0, 1].

    Exact match for pass/fail and categories (case-insensitive); for numbers closeness
    ``max(0, 1 - |a - b| / range)``. A failed verdict scores 0.

    Args:
        verdict: The judge's verdict.
        example: The example with the human label.
        value_type: pass_fail, categorical or numeric.
        value_range: Width of the numeric scale; by default 1 for values within [0, 1],
            else 4 (a 1-5 scale).
    """
    if not verdict.ok:
        return 0.0
    a = normalize_value(verdict.value, value_type)
    b = normalize_value(example.label, value_type)
    if a is None or b is None:
        return 0.0
    if value_type == "numeric":
        width = value_range or (1.0 if max(abs(a), abs(b)) <= 1 else 4.0)
        return max(0.0, 1.0 - abs(a - b) / width)
    if value_type == "categorical":
        return 1.0 if str(a).lower() == str(b).lower() else 0.0
    return 1.0 if a == b else 0.0


# --- error classification ----------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    from core.models.structured import exception_chain

    return exception_chain(exc)


def classify_failure(exc: BaseException) -> Literal["auth", "retry", "fail"]:
    """``auth`` (stop everything), ``retry`` (transient) or ``fail`` (record, no retry)."""
    import litellm

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, CredentialsError | litellm.AuthenticationError):
            return "auth"
        if isinstance(e, litellm.PermissionDeniedError):
            return "auth"
        if getattr(e, "status_code", None) in (401, 403):
            return "auth"
    transient = (
        litellm.RateLimitError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.Timeout,
        litellm.APIConnectionError,
        TimeoutError,
        ConnectionError,
        ValueError,  # JSON decode and pydantic validation errors: an unparseable answer
    )
    for e in chain:
        status = getattr(e, "status_code", None)
        if isinstance(e, transient) or status in (408, 409, 429) or (status or 0) >= 500:
            return "retry"
        name = type(e).__name__
        if name in ("Timeout", "ConnectTimeout", "ReadTimeout", "ConnectionError"):
            return "retry"
    text = str(exc).lower()
    if any(s in text for s in ("parse", "json", "timed out", "rate limit", "overloaded")):
        return "retry"
    return "fail"


# --- evaluator -----------------------------------------------------------------------


@dataclass
class EvaluatorStats:
    """What a :class:`JudgeEvaluator` spent."""

    calls: int = 0
    """Judge invocations (retries included)."""
    retries: int = 0
    """Invocations that were retries."""
    failed: int = 0
    """Examples recorded as failed after retries."""
    failed_trace_ids: set[str] | None = None
    """Distinct traces with at least one failed verdict."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "calls": self.calls,
            "retries": self.retries,
            "failed": self.failed,
            "failed_traces": len(self.failed_trace_ids or ()),
        }


@dataclass(frozen=True)
class RoundInfo:
    """One parallel round of judge calls (for critical-path accounting)."""

    pairs: int
    """(candidate, example) pairs asked for."""
    calls: int
    """Judge invocations made (cache misses plus retries)."""
    depth: int
    """Longest chain of dependent attempts (1 + most retries of one example; 0 if cached)."""
    seconds: float
    """Wall time of the round."""


class JudgeEvaluator:
    """Runs one judge's candidates on examples, in parallel, cached, with bounded retries."""

    def __init__(
        self,
        spec: JudgeSpec,
        workers: int = 8,
        cache: VerdictCache | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.25,
        timeout: float | None = None,
        traces: TraceCache | None = None,
    ) -> None:
        """Create an evaluator.

        Args:
            spec: The judge (name, value type, model); instructions come per call.
            workers: Judge calls in flight at once.
            cache: Verdict cache to share (a new one by default).
            retries: Retries of a transient failure before the example is marked failed.
            backoff: First backoff in seconds, doubled per retry (with jitter).
            timeout: Seconds before one LiteLLM judge call is abandoned (default:
                :func:`core.models.completion.default_timeout`).
            traces: Where a ``{{ trace }}`` judge's traces come from (a new bounded cache
                on the configured store by default; share one to load each trace once).
        """
        from core.models.completion import default_timeout

        self.spec = spec
        self.workers = max(1, int(workers))
        self.cache = cache if cache is not None else VerdictCache()
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout or default_timeout()
        self.stats = EvaluatorStats(failed_trace_ids=set())
        self.traces = traces if traces is not None else TraceCache()
        """The traces a ``{{ trace }}`` judge reads (loaded once per trace id)."""
        self.last_round: RoundInfo | None = None
        self.last_misses: list[int] = []
        """Per item of the last :meth:`evaluate_many`: pairs not found in the cache."""
        self._lock = threading.Lock()
        self._judges: OrderedDict[tuple[str, Mode], Any] = OrderedDict()
        self._model = parse_model(spec.model, spec.base_url)
        # One pool for the evaluator's life: an optimizer runs dozens of short rounds, and
        # starting fresh threads for each cost about 10 ms a round.
        self._pool: ThreadPoolExecutor | None = None
        install_usage_tracking()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="judge-eval"
                )
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (a later evaluation starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    @property
    def response_format(self) -> Mode:
        """The structured-output mode judge calls use now: ``json_schema``, or what the
        judge's server fell back to (``json_object``, ``text``; see the module docstring)."""
        if not self._model.base_url:
            return MODES[0]
        return endpoint_mode(self._model.model, self._model.base_url)

    # The evaluation copy of a judge: MLflow's own retries off when we retry ourselves.
    def _judge_for(self, instructions: str, mode: Mode | None = None) -> Any:
        mode = mode or self.response_format
        key = (instructions_key(instructions), mode)
        with self._lock:
            if key in self._judges:
                self._judges.move_to_end(key)
                return self._judges[key]
        model = self._model
        params: dict[str, Any] = {"retry_policy": None, "num_retries": 0, "timeout": self.timeout}
        if model.base_url:
            # Through LiteLLM to the same server (see the module docstring, "Routes"),
            # with the answer's length bounded (see SERVER_JUDGE_MAX_TOKENS).
            params["max_tokens"] = SERVER_JUDGE_MAX_TOKENS
            params["temperature"] = SERVER_JUDGE_TEMPERATURE  # same trace, same verdict
            if mode != MODES[0]:
                # MLflow applies inference_params after its own response_format.
                params = {**params, "response_format": response_format_for(mode)}
            judge = self._compatible_judge(instructions, params)
        elif gateway_claims(model.uri):
            judge = build_judge(self.spec, instructions)
        else:
            judge = build_judge(self.spec, instructions, inference_params=params)
        with self._lock:
            self._judges[key] = judge
            while len(self._judges) > 64:
                self._judges.popitem(last=False)
        return judge

    def _compatible_judge(self, instructions: str, params: dict[str, Any]) -> Any:
        """The judge on LiteLLM's OpenAI-compatible provider at the spec's base URL."""
        from mlflow.exceptions import MlflowException
        from mlflow.genai.judges import make_judge

        from core.models.completion import _NO_KEY
        from core.models.secrets import api_key_for

        model = self._model
        if not api_key_for(model):
            # A keyless server: the OpenAI client still wants some key (not a secret).
            params = {**params, "api_key": _NO_KEY}
        try:
            return make_judge(
                name=self.spec.name,
                instructions=instructions,
                feedback_value_type=feedback_value_type(self.spec),
                model=f"{COMPATIBLE_PROVIDER}:/{model.model}",
                base_url=model.base_url,  # LiteLLM's api_base: the /v1 base
                inference_params=params,
            )
        except MlflowException as exc:
            raise ValidationError(f"MLflow refused the judge instructions: {exc.message}") from None

    def _evaluation_judge(self, judge: Any, mode: Mode | None = None) -> Any:
        """A judge object as it is evaluated: a judge (or a MemAlign judge's base judge) on
        the spec's model is rerouted like :meth:`_judge_for`'s copies when the spec names a
        base URL. The judge's own base URL is not required: MLflow does not serialize it,
        so a judge loaded from the registry has none, and the spec (the registered
        version's base URL) says where its model is served."""
        if not self._model.base_url:
            return judge
        from mlflow.genai.judges.instructions_judge import InstructionsJudge

        def on_server(j: Any) -> TypeGuard[InstructionsJudge]:
            return isinstance(j, InstructionsJudge) and j.model == self._model.uri

        if on_server(judge):
            return self._judge_for(judge.instructions, mode)
        base = getattr(judge, "_base_judge", None)  # MemAlign's MemoryAugmentedJudge
        if on_server(base) and hasattr(judge, "model_copy"):
            # MemAlign scores through a copy of its base judge with augmented
            # instructions; give it our copy of the base judge (the original is untouched).
            rerouted = judge.model_copy()
            rerouted._base_judge = self._judge_for(base.instructions, mode)
            return rerouted
        return judge

    def evaluate(
        self, instructions_or_judge: str | Any, examples: Sequence[Example]
    ) -> list[Verdict]:
        """Run a judge on examples.

        Args:
            instructions_or_judge: Candidate instructions (the spec's judge with these
                instructions), or any MLflow ``Judge`` object (e.g. a MemAlign judge; not
                cached, since its behaviour is not a function of its instructions).
            examples: The examples.

        Returns:
            One verdict per example, in order.

        Raises:
            CredentialsError: The model's key is missing or rejected.
            ValidationError: MLflow refuses the instructions.
        """
        return self.evaluate_many([(instructions_or_judge, list(examples))])[0]

    def evaluate_many(
        self, items: Sequence[tuple[str | Any, Sequence[Example]]]
    ) -> list[list[Verdict]]:
        """Run several (candidate, examples) pairs as one parallel round.

        Returns:
            Verdicts per item, in order.
        """
        require_credentials(self._model)
        started = time.monotonic()
        results: list[list[Verdict | None]] = []
        todo: list[tuple[int, int, _Resolver, str | None, Example]] = []
        # The same instructions on the same example twice in one round (an aligned judge
        # that kept the seed's instructions, scored beside the seed): one call, two uses.
        first: dict[tuple[str, str, Any], int] = {}
        repeats: list[tuple[int, int, int]] = []
        trace_ids: list[str] = []
        for i, (candidate, examples) in enumerate(items):
            key = instructions_key(candidate) if isinstance(candidate, str) else None
            judge = _Resolver(self, candidate)
            needs_trace = uses_trace(judge(self.response_format))
            row: list[Verdict | None] = []
            for j, ex in enumerate(examples):
                ckey = (key, ex.trace_id, ex.label_version) if key else None
                hit = self.cache.get(ckey) if ckey else None
                row.append(hit)
                if hit is None and ckey is not None and ckey in first:
                    repeats.append((i, j, first[ckey]))
                elif hit is None:
                    if ckey is not None:
                        first[ckey] = len(todo)
                    todo.append((i, j, judge, key, ex))
                    if needs_trace:
                        trace_ids.append(ex.trace_id)
            results.append(row)
        # A trace judge's traces, loaded once for the round (batched), before any call.
        loaded: dict[str, Any] = {}
        if trace_ids:
            try:
                loaded = self.traces.get_many(trace_ids)
            except Exception as exc:  # e.g. ids that are not trace ids: fail per example
                _log.warning("Could not load traces for the judge: %s", redact(str(exc))[:300])
        self.last_misses = [sum(1 for t in todo if t[0] == i) for i in range(len(items))]
        calls_before = self.stats.calls
        depth = 0
        if todo:
            stop = threading.Event()
            pool = self._executor()
            futures = [
                pool.submit(self._run_one, judge, ex, stop, loaded.get(ex.trace_id))
                for _, _, judge, _, ex in todo
            ]
            error: BaseException | None = None
            for (i, j, _, key, ex), fut in zip(todo, futures, strict=True):
                try:
                    verdict, attempts = fut.result()
                except CredentialsError as exc:
                    stop.set()
                    error = error or exc
                    continue
                depth = max(depth, attempts)
                results[i][j] = verdict
                if key:
                    self.cache.put((key, ex.trace_id, ex.label_version), verdict)
            if error is not None:
                raise error
            for i, j, n in repeats:
                results[i][j] = results[todo[n][0]][todo[n][1]]
        self.last_round = RoundInfo(
            pairs=sum(len(e) for _, e in items),
            calls=self.stats.calls - calls_before,
            depth=depth,
            seconds=time.monotonic() - started,
        )
        return [[v for v in row if v is not None] for row in results]

    def _call(self, judge: Any, ex: Example, trace: Any = None) -> Any:
        """One judge invocation on one example (MLflow's own call)."""
        kwargs: dict[str, Any] = {"inputs": ex.inputs, "outputs": ex.outputs}
        used = [v for v in TEMPLATE_VARIABLES if v in (getattr(judge, "instructions", "") or "")]
        if "{{ expectations }}" in used or ex.expectations:
            kwargs["expectations"] = ex.expectations or {}
        if uses_trace(judge):
            trace = trace if trace is not None else self.traces.get(ex.trace_id)
            if trace is None:
                raise NotFoundError(
                    f"Trace {ex.trace_id} is not in the store: a judge using {{{{ trace }}}} "
                    "reads the trace's spans, so it can only judge stored traces."
                )
            kwargs["trace"] = trace
        return judge(**kwargs)

    def _run_one(
        self, resolve: _Resolver, ex: Example, stop: threading.Event, trace: Any = None
    ) -> tuple[Verdict, int]:
        if not self._model.base_url:
            return self._attempts(resolve, ex, stop, trace, None)
        # Until the server answered once, one call at a time finds out which structured
        # output it takes (the others wait, then go in the mode found).
        gate = endpoint_gate(self._model.model, self._model.base_url)
        try:
            return self._attempts(resolve, ex, stop, trace, gate)
        finally:
            gate.release()

    def _attempts(
        self,
        resolve: _Resolver,
        ex: Example,
        stop: threading.Event,
        trace: Any,
        gate: Gate | None,
    ) -> tuple[Verdict, int]:
        mode = self.response_format
        judge = resolve(mode)
        # MLflow's gateway client retries by itself and LiteLLM never sees its calls.
        inner = getattr(judge, "_base_judge", judge)
        via_gateway = gateway_claims(getattr(inner, "model", None) or "")
        retries = 0 if via_gateway else self.retries
        last = "not attempted"
        attempt = refusals = 0
        while attempt <= retries:
            if stop.is_set():
                raise CredentialsError("stopped: another judge call failed authentication")
            with self._lock:
                self.stats.calls += 1
                self.stats.retries += 1 if attempt else 0
            start = time.time()
            try:
                feedback = self._call(judge, ex, trace)
                error = getattr(feedback, "error", None)
                if error is not None:
                    raise RuntimeError(getattr(error, "error_message", None) or str(error))
                if via_gateway:
                    record_call(ok=True, start=start, end=time.time())
                if gate is not None:
                    gate.settle()
                value = normalize_value(feedback.value, self.spec.value_type)
                return Verdict(value, feedback.rationale), attempt + refusals + 1
            except Exception as exc:
                if via_gateway:
                    record_call(ok=False, start=start, end=time.time())
                if self._model.base_url and is_response_format_rejection(exc):
                    # The server refuses this structured output: the same call in the
                    # next mode, at once (not a retry: nothing transient happened).
                    following = fall_back(self._model.model, self._model.base_url, mode)
                    if following is not None and following != mode:
                        mode, judge = following, resolve(following)
                        refusals += 1
                        continue
                if gate is not None:
                    gate.settle()  # an answer, or an error that is not about the format
                # On a server, MLflow may have dropped the response_format itself (it does
                # on a 400), so a reply it could not parse is read in any mode.
                reply = self._unparsed_reply(exc) if self._model.base_url else None
                if reply is not None:
                    try:
                        value, rationale = parse_judge_reply(
                            reply, self.spec.value_type, tuple(self.spec.options)
                        )
                        return Verdict(value, rationale), attempt + refusals + 1
                    except UnparseableReply as unreadable:
                        exc = unreadable  # retried like any unparseable answer
                kind = classify_failure(exc)
                last = redact(f"{type(exc).__name__}: {exc}")[:500]
                if kind == "auth":
                    raise CredentialsError(
                        f"{self._model.uri} rejected the API key ({last}). Check the key in "
                        "the environment or in .streamlit/secrets.toml."
                    ) from None
                if kind == "fail" or attempt == retries:
                    break
                delay = min(20.0, self.backoff * 2**attempt) * (1 + 0.1 * random.random())
                time.sleep(delay)
                attempt += 1
        with self._lock:
            self.stats.failed += 1
            failed = self.stats.failed_trace_ids
            assert failed is not None  # __init__ gives it a set
            failed.add(ex.trace_id)
        return Verdict(None, None, error=last), attempt + refusals + 1

    @staticmethod
    def _unparsed_reply(exc: BaseException) -> str | None:
        """The reply MLflow could not parse as JSON, from its error; None for any other
        failure."""
        for link in _chain(exc):
            text = str(getattr(link, "message", None) or link)
            at = text.find(_UNPARSED_REPLY)
            if at >= 0:
                return text[at + len(_UNPARSED_REPLY) :]
        return None


class _Resolver:
    """What one candidate is evaluated as in a given structured-output mode (built once per
    mode: a MemAlign judge's rerouted copy is not rebuilt per example)."""

    def __init__(self, evaluator: JudgeEvaluator, candidate: str | Any) -> None:
        self._evaluator = evaluator
        self._candidate = candidate
        self._lock = threading.Lock()
        self._built: dict[Mode, Any] = {}

    def __call__(self, mode: Mode) -> Any:
        with self._lock:
            if mode not in self._built:
                ev, c = self._evaluator, self._candidate
                self._built[mode] = (
                    ev._judge_for(c, mode) if isinstance(c, str) else ev._evaluation_judge(c, mode)
                )
            return self._built[mode]
