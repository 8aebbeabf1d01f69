"""The MLflow Prompt Registry: load, list and register prompt versions, render templates.

A prompt is addressed as ``name`` (its latest version), ``name@3`` (a version) or
``name@production`` (an alias), the form the CLI and the settings use; :class:`PromptRef`
turns it into MLflow's ``prompts:/...`` URI. Templates are MLflow's: a text with
``{{ variable }}`` placeholders, or a chat template (a list of ``{role, content}``
messages). :func:`template_variables` and :func:`render` follow
``PromptVersion.variables`` and ``PromptVersion.format`` to the character, so what we
render is what an application that loads the prompt with MLflow renders.

Reads go through ``MlflowClient``'s prompt methods, not ``mlflow.genai.load_prompt``: that
one caches alias lookups for a minute (a just-moved alias would load the old version) and
links the prompt to whatever experiment is active. MLflow is imported inside functions so
that importing this module (the CLI, pre-flight) stays cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import NotFoundError, ValidationError

__all__ = [
    "PromptInfo",
    "PromptRef",
    "list_prompt_versions",
    "list_prompts",
    "load_prompt",
    "parse_prompt_ref",
    "register_prompt",
    "render",
    "set_prompt_alias",
    "template_variables",
    "to_messages",
]

#: MLflow's placeholder rule (``mlflow.prompt.constants.PROMPT_TEMPLATE_VARIABLE_PATTERN``),
#: copied so that reading a template's variables imports no MLflow; a test pins the two.
VARIABLE_PATTERN = re.compile(
    r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}"
)
#: MLflow's prompt name rule (``PROMPT_NAME_RULE``).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]+$")
_ALIAS_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]+$")
#: MLflow's own alias for the newest version; never set by users.
LATEST = "latest"

Template = str | list[dict[str, str]]


@dataclass(frozen=True)
class PromptRef:
    """Which version of a registered prompt: by number, by alias, or the latest."""

    name: str
    """The prompt's name in the registry."""
    version: int | None = None
    """A version number; None with no alias means the latest version."""
    alias: str | None = None
    """An alias such as ``production``; exclusive with ``version``."""

    def __post_init__(self) -> None:
        if self.version is not None and self.alias is not None:
            raise ValidationError(
                f"Give a version or an alias for prompt {self.name!r}, not both "
                f"({self.version} and {self.alias!r})."
            )

    def uri(self) -> str:
        """MLflow's URI: ``prompts:/name/3``, ``prompts:/name@alias`` or ``prompts:/name@latest``."""
        if self.version is not None:
            return f"prompts:/{self.name}/{self.version}"
        return f"prompts:/{self.name}@{self.alias or LATEST}"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A prompt needs a name, e.g. northwind-support.")
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            f"Invalid prompt name {name!r}: use letters, digits, '_', '-' and '.' only."
        )
    return name


def parse_prompt_ref(text: str) -> PromptRef:
    """Read ``name``, ``name@3``, ``name@alias`` (or a ``prompts:/`` URI) as a reference.

    Args:
        text: What the user typed; ``name@latest`` is the same as ``name``.

    Returns:
        The reference; nothing is looked up.

    Raises:
        ValidationError: empty, a bad name, a version below 1, or a bad alias.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(
            "A prompt is given as NAME, NAME@VERSION or NAME@ALIAS, e.g. northwind-support@1."
        )
    raw = text.strip()
    if raw.startswith("prompts:/"):
        body = raw.removeprefix("prompts:/")
        if "@" not in body and "/" in body:
            body = "@".join(body.rsplit("/", 1))
        raw = body
    name, sep, rest = raw.partition("@")
    name = _check_name(name)
    if not sep:
        return PromptRef(name)
    rest = rest.strip()
    if not rest:
        raise ValidationError(f"{text!r}: nothing after '@'; give a version (3) or an alias.")
    if rest.isdigit():
        version = int(rest)
        if version < 1:
            raise ValidationError(f"{text!r}: prompt versions start at 1.")
        return PromptRef(name, version=version)
    if not _ALIAS_PATTERN.match(rest):
        raise ValidationError(
            f"{text!r}: invalid alias {rest!r}; use letters, digits, '_', '-' and '.' only."
        )
    return PromptRef(name) if rest == LATEST else PromptRef(name, alias=rest)


@dataclass(frozen=True)
class PromptInfo:
    """One registered prompt version."""

    name: str
    """The prompt's name."""
    version: int
    """Its version number."""
    template: Template
    """A text template, or a chat template (list of ``{role, content}`` messages)."""
    variables: tuple[str, ...]
    """Template variables, in order of first appearance."""
    tags: dict[str, str]
    """The version's tags (MLflow's reserved ones left out)."""
    aliases: tuple[str, ...]
    """Aliases pointing at this version."""
    commit_message: str | None
    """The message it was registered with."""

    @property
    def is_chat(self) -> bool:
        """Whether the template is a list of chat messages."""
        return isinstance(self.template, list)

    @property
    def uri(self) -> str:
        """MLflow's URI of exactly this version."""
        return f"prompts:/{self.name}/{self.version}"

    def text(self) -> str:
        """The template as text: itself, or ``role: content`` blocks for a chat template."""
        return template_text(self.template)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "version": self.version,
            "template": self.template,
            "variables": list(self.variables),
            "tags": dict(self.tags),
            "aliases": list(self.aliases),
            "commit_message": self.commit_message,
            "is_chat": self.is_chat,
        }


def template_text(template: Template) -> str:
    """A template as one text; chat messages as ``role: content`` blocks."""
    if isinstance(template, str):
        return template
    return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in template)


def _check_template(template: Any) -> Template:
    if isinstance(template, str):
        if not template.strip():
            raise ValidationError("The prompt template is empty; write the prompt text first.")
        return template
    if isinstance(template, Sequence) and not isinstance(template, bytes):
        messages = list(template)
        if not messages:
            raise ValidationError("A chat template needs at least one {role, content} message.")
        out = []
        for i, m in enumerate(messages, start=1):
            if (
                not isinstance(m, Mapping)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
                or not m["role"].strip()
            ):
                raise ValidationError(
                    f"Chat template message {i} must be an object with string 'role' and "
                    f"'content'; got {m!r}."
                )
            out.append({"role": m["role"], "content": m["content"]})
        return out
    raise ValidationError(
        "A template is a text or a list of {role, content} messages; "
        f"got {type(template).__name__}."
    )


def template_variables(template: Template) -> tuple[str, ...]:
    """The ``{{ variable }}`` names of a template, in order of first appearance.

    Same rule as ``PromptVersion.variables`` (which is an unordered set): the regex runs
    over the text, or over the JSON of a chat template's messages.
    """
    text = template if isinstance(template, str) else json.dumps(template)
    return tuple(dict.fromkeys(VARIABLE_PATTERN.findall(text)))


def _is_jinja(template: Template) -> bool:
    # MLflow renders templates with {% ... %} blocks through Jinja2 instead.
    if isinstance(template, str):
        return "{%" in template and "%}" in template
    return any("{%" in m.get("content", "") and "%}" in m.get("content", "") for m in template)


def _substitute(text: str, values: Mapping[str, Any]) -> str:
    # MLflow's format_prompt, step for step: one substitution per value, in the order of
    # the mapping, so a value containing another placeholder behaves the same. Keys that
    # are not variable names cannot be placeholders; MLflow would use them as a regex.
    for key, value in values.items():
        if not VARIABLE_PATTERN.fullmatch("{{" + key + "}}"):
            continue
        replacement = str(value).replace("\\", "\\\\")
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", replacement, text)
    return text


def render(template: Template, values: Mapping[str, Any]) -> Template:
    """Fill a template's variables; the same result as MLflow's ``PromptVersion.format``.

    Args:
        template: A text or chat template.
        values: Variable -> value (non-strings are written with ``str()``, as MLflow does).

    Returns:
        The text, or the chat messages (``role`` and ``content`` only) with their content
        filled in.

    Raises:
        ValidationError: a variable of the template has no value (names them). Jinja2
            templates (with ``{% ... %}`` blocks) are rendered like MLflow does, leaving
            undefined names empty.
    """
    if _is_jinja(template):
        from jinja2 import Undefined
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(undefined=Undefined)
        if isinstance(template, str):
            return env.from_string(template).render(**values)
        return [
            {"role": m["role"], "content": env.from_string(m.get("content", "")).render(**values)}
            for m in template
        ]
    missing = [v for v in template_variables(template) if v not in values]
    if missing:
        raise ValidationError(
            f"No value for template variable(s) {', '.join(missing)}; map each to a dataset field."
        )
    if isinstance(template, str):
        return _substitute(template, values)
    return [
        {"role": m["role"], "content": _substitute(m.get("content", ""), values)} for m in template
    ]


def to_messages(rendered: Template) -> list[dict[str, str]]:
    """Chat messages for a rendered template: a text becomes one user message."""
    if isinstance(rendered, str):
        return [{"role": "user", "content": rendered}]
    return [{"role": m["role"], "content": m["content"]} for m in rendered]


def _client() -> Any:
    import mlflow

    from core.store import config

    config.configure()
    return mlflow.MlflowClient()


def _info(pv: Any, aliases: Sequence[str] | None = None) -> PromptInfo:
    template = pv.template
    return PromptInfo(
        name=pv.name,
        version=int(pv.version),
        template=template,
        variables=template_variables(template),
        tags={k: v for k, v in (pv.tags or {}).items() if not k.startswith("_mlflow")},
        aliases=tuple(sorted(pv.aliases if aliases is None else aliases)),
        commit_message=pv.commit_message or None,
    )


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    # A missing alias is INVALID_PARAMETER_VALUE on the file and SQL stores.
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def list_prompts() -> list[str]:
    """Names of every registered prompt, sorted."""
    client = _client()
    names: list[str] = []
    token = None
    while True:
        page = client.search_prompts(max_results=1000, page_token=token)
        names.extend(p.name for p in page)
        token = page.token
        if not token or not page:
            break
    return sorted(set(names))


def _version_numbers(client: Any, name: str) -> list[int]:
    numbers: list[int] = []
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=1000, page_token=token)
        numbers.extend(int(v.version) for v in page)
        token = page.token
        if not token or not page:
            break
    return sorted(set(numbers))


def _require_prompt(client: Any, name: str) -> None:
    if client.get_prompt(name) is None:
        names = list_prompts()
        shown = ", ".join(names[:50]) + (" ..." if len(names) > 50 else "")
        raise NotFoundError(
            f"No prompt named {name!r} in the Prompt Registry. Registered prompts: "
            f"{shown or 'none'}. Register one: alignboard prompt register {name} "
            "--template-file FILE"
        )


def _alias_map(client: Any, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for number in _version_numbers(client, name):
        pv = client.get_prompt_version(name, number)
        for alias in pv.aliases if pv is not None else ():
            out[alias] = number
    return out


def load_prompt(ref: PromptRef | str) -> PromptInfo:
    """Load one version of a registered prompt.

    Args:
        ref: A :class:`PromptRef` or its text (``name``, ``name@3``, ``name@alias``).

    Returns:
        The version (the newest one when neither version nor alias is given).

    Raises:
        ValidationError: a malformed reference.
        NotFoundError: the prompt, version or alias does not exist; the message names the
            prompts, versions or aliases that do.
    """
    from mlflow.exceptions import MlflowException

    if isinstance(ref, str):
        ref = parse_prompt_ref(ref)
    client = _client()
    _require_prompt(client, ref.name)
    if ref.version is None and ref.alias is None:
        numbers = _version_numbers(client, ref.name)
        if not numbers:
            raise NotFoundError(f"Prompt {ref.name!r} has no versions; register one first.")
        ref = PromptRef(ref.name, version=numbers[-1])
    try:
        if ref.alias is not None:
            pv = client.get_prompt_version_by_alias(ref.name, ref.alias)
        else:
            pv = client.get_prompt_version(ref.name, ref.version)
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
        pv = None
    if pv is not None:
        return _info(pv)
    if ref.alias is not None:
        aliases = _alias_map(client, ref.name)
        shown = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
        raise NotFoundError(
            f"Prompt {ref.name!r} has no alias {ref.alias!r}. Its aliases: {shown}. Set one: "
            f"alignboard prompt alias {ref.name} VERSION {ref.alias}"
        )
    numbers = _version_numbers(client, ref.name)
    raise NotFoundError(
        f"Prompt {ref.name!r} has no version {ref.version}. Its versions: "
        f"{', '.join(map(str, numbers)) or 'none'}."
    )


def list_prompt_versions(name: str) -> list[PromptInfo]:
    """Every version of a prompt, oldest first, with its aliases.

    Raises:
        NotFoundError: no such prompt (the message names the registered ones).
    """
    client = _client()
    name = _check_name(name)
    _require_prompt(client, name)
    out = []
    for number in _version_numbers(client, name):
        pv = client.get_prompt_version(name, number)
        if pv is not None:
            out.append(_info(pv))
    return out


def register_prompt(
    name: str,
    template: Template,
    *,
    commit_message: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> PromptInfo:
    """Register a new version of a prompt (creating the prompt on its first version).

    Args:
        name: The prompt's name.
        template: A text with ``{{ variable }}`` placeholders, or chat messages.
        commit_message: What changed, shown in MLflow's prompt UI.
        tags: Version tags (strings), e.g. the run that produced it.

    Returns:
        The new version.

    Raises:
        ValidationError: a bad name or template, non-string tags, or a registered *model*
            already holds the name.
    """
    from mlflow.exceptions import MlflowException

    name = _check_name(name)
    template = _check_template(template)
    clean_tags: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"Prompt tags are strings; {key!r}: {value!r} is not.")
        clean_tags[key] = value
    client = _client()
    try:
        pv = client.register_prompt(
            name=name, template=template, commit_message=commit_message, tags=clean_tags
        )
    except MlflowException as exc:
        raise ValidationError(f"Cannot register prompt {name!r}: {exc.message}") from exc
    return _info(pv, aliases=())


def set_prompt_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` (e.g. ``production``) at a version of a prompt, moving it if set.

    Raises:
        ValidationError: a bad alias (``latest`` is MLflow's own) or version number.
        NotFoundError: no such prompt or version (the message names what exists).
    """
    from mlflow.exceptions import MlflowException

    name = _check_name(name)
    if not isinstance(alias, str) or not _ALIAS_PATTERN.match(alias.strip()):
        raise ValidationError(
            f"Invalid alias {alias!r}; use letters, digits, '_', '-' and '.' only."
        )
    alias = alias.strip()
    if alias == LATEST or alias.isdigit():
        raise ValidationError(
            f"{alias!r} cannot be an alias (it reads as {'the newest' if alias == LATEST else 'a'} "
            "version); pick a name such as production or candidate."
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"A prompt version is a number from 1; got {version!r}.")
    client = _client()
    _require_prompt(client, name)
    numbers = _version_numbers(client, name)
    if version not in numbers:
        raise NotFoundError(
            f"Prompt {name!r} has no version {version}. Its versions: "
            f"{', '.join(map(str, numbers)) or 'none'}."
        )
    try:
        client.set_prompt_alias(name, alias, version)
    except MlflowException as exc:
        raise ValidationError(f"Cannot set alias {alias!r} on {name!r}: {exc.message}") from exc
