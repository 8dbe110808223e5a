"""LangChain chat models answered through a BatchBridge bridge.

`batched(ChatOpenAI(model=...), batcher="bridge")` returns a copy of the model whose calls
go through the bridge instead of the provider's synchronous API. The copy is an instance of
a subclass of the model's own class (`BatchedChatOpenAI`, `BatchedChatAnthropic`,
`BatchedChatGoogleGenerativeAI`), so everything LangChain does with a `ChatOpenAI` it does
with the copy: the request is built by the model's own `_get_request_payload`
(`_prepare_request` for Gemini), the reply parsed by its own parser (`_create_chat_result`,
`_format_output`, `_response_to_result`), and `bind_tools`, `with_structured_output`,
tool calls, usage metadata and message ids come out as without batching.

For agents, `batching_middleware(batcher="bridge")` is an agent middleware for
`langchain.agents.create_agent` that runs every model call of the agent through the bridge
(`wrap_model_call` / `awrap_model_call` swap in the batched copy of the request's model).

Calls behave like `batch_bridge.wait` (async) and `wait_sync` (sync): they are only valid
inside a LangGraph node on a server, the node's thread is interrupted until the batch
answers, and the node then runs again from the top, building the same request again.

**Streaming falls back to one final chunk.** Batches do not stream: the copy sets
`disable_streaming=True`, so `stream()` / `astream()` (and LangGraph's "messages" stream
mode) yield the whole answer once it is back. The provider's own streaming path is never
taken; calling `_stream` / `_astream` directly raises `NotImplementedError`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGenerationChunk, ChatResult
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.integrations.langchain needs langchain-core: "
        "pip install 'batch-bridge[langchain]'"
    ) from exc

from batch_bridge._wait import wait, wait_sync
from batch_bridge.types import max_wait_seconds

if TYPE_CHECKING:
    from langchain.agents.middleware import AgentMiddleware

__all__ = ["BatchedChatModel", "batched", "batching_middleware"]

_M = TypeVar("_M", bound=BaseChatModel)
_INSTALL_HINT = "pip install 'batch-bridge[langchain]'"
_REFUSED_OPTIONS = ("extra_headers", "extra_query")


class _Request(NamedTuple):
    """A bridge item and what parsing its reply needs besides the reply."""

    item: dict[str, Any]
    """The bridge item: `{"url", "body"}` (OpenAI), `messages.create` kwargs (Anthropic), or
    `generate_content` kwargs (Gemini)."""
    schema: Any
    """The structured-output type the SDK's `parse` would have been given, or None."""
    kwargs: dict[str, Any]
    """The call's keyword arguments, for parsers that read them."""


class _Codec(NamedTuple):
    """How one provider's chat model turns a call into an item and a reply into a result."""

    request: Callable[[Any, list[BaseMessage], list[str] | None, dict[str, Any]], _Request]
    result: Callable[[Any, _Request, Any], ChatResult]


def _common_body(payload: dict[str, Any], provider: str) -> dict[str, Any]:
    """The payload as a batch request body: no `stream`, `extra_body` merged, as the SDK does."""
    refused = [name for name in _REFUSED_OPTIONS if payload.get(name)]
    if refused:
        raise TypeError(
            f"{', '.join(refused)} cannot be sent with a batched {provider} request; "
            "use the unwrapped model"
        )
    body = {
        name: value
        for name, value in payload.items()
        if name not in ("stream", "extra_body", "timeout", *_REFUSED_OPTIONS)
    }
    body.update(payload.get("extra_body") or {})
    return body


# -- OpenAI -----------------------------------------------------------------------------


def _openai_request(
    model: Any, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> _Request:
    # The helpers `client.chat.completions.parse` / `client.responses.parse` use; the
    # unbatched ChatOpenAI goes through those whenever a structured-output type is bound.
    from openai.lib._parsing._completions import (
        type_to_response_format_param,
        validate_input_tools,
    )
    from openai.lib._parsing._responses import type_to_text_format_param

    payload = model._get_request_payload(messages, stop=stop, **kwargs)
    if model._use_responses_api(payload):
        schema = payload.pop("text_format", None)
        if schema is not None:
            payload["text"] = {
                **(payload.get("text") or {}),
                "format": type_to_text_format_param(schema),
            }
        schema = kwargs.get("response_format") or schema
        url = "/v1/responses"
    else:
        schema = payload.get("response_format")
        if schema is not None:
            if payload.get("tools"):
                validate_input_tools(payload["tools"])
            payload["response_format"] = type_to_response_format_param(schema)
        url = "/v1/chat/completions"
    return _Request({"url": url, "body": _common_body(payload, "OpenAI")}, schema, kwargs)


def _openai_result(model: Any, request: _Request, reply: Any) -> ChatResult:
    from langchain_openai.chat_models.base import _construct_lc_result_from_responses_api
    from openai import omit
    from openai.lib._parsing._completions import parse_chat_completion
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    if request.item["url"] == "/v1/responses":
        return _construct_lc_result_from_responses_api(
            Response.construct(**reply),
            schema=request.schema,
            metadata={},
            output_version=model.output_version,
        )
    completion: Any = ChatCompletion.construct(**reply)
    if request.schema is not None:
        completion = parse_chat_completion(
            response_format=request.schema,
            input_tools=request.item["body"].get("tools") or omit,
            chat_completion=completion,
        )
    return model._create_chat_result(completion, {})  # type: ignore[no-any-return]


# -- Anthropic --------------------------------------------------------------------------


def _anthropic_request(
    model: Any, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> _Request:
    payload = model._get_request_payload(messages, stop=stop, **kwargs)
    if payload.get("betas"):
        raise TypeError(
            f"betas {payload['betas']!r} cannot be sent with a batched Anthropic request "
            "(Message Batches take no per-request beta headers); use the unwrapped model"
        )
    payload.pop("betas", None)
    return _Request(_common_body(payload, "Anthropic"), None, kwargs)


def _anthropic_result(model: Any, request: _Request, reply: Any) -> ChatResult:
    from anthropic.types import Message

    return model._format_output(  # type: ignore[no-any-return]
        Message.construct(**reply), generation_info={}, **request.kwargs
    )


# -- Gemini -----------------------------------------------------------------------------


def _gemini_request(
    model: Any, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> _Request:
    from batch_bridge.providers.gemini._client import request_item

    request = model._prepare_request(messages, stop=stop, **kwargs)
    item = request_item(request["model"], request["contents"], request.get("config"))
    return _Request(item, None, kwargs)


def _gemini_result(model: Any, request: _Request, reply: Any) -> ChatResult:
    from google.genai.types import GenerateContentResponse
    from langchain_google_genai.chat_models import _response_to_result

    return _response_to_result(GenerateContentResponse.model_validate(reply))


_OPENAI = _Codec(_openai_request, _openai_result)
_ANTHROPIC = _Codec(_anthropic_request, _anthropic_result)
_GEMINI = _Codec(_gemini_request, _gemini_result)
_CODECS = (
    ("langchain_openai", "ChatOpenAI", _OPENAI),
    ("langchain_anthropic", "ChatAnthropic", _ANTHROPIC),
    ("langchain_google_genai", "ChatGoogleGenerativeAI", _GEMINI),
)
"""(module, class, codec): a model of the class (or a subclass) is batched with the codec."""


# -- The model --------------------------------------------------------------------------


class BatchedChatModel(BaseChatModel):
    """What `batched()` mixes into a chat model's class; see the module docstring.

    Instances come only from `batched()`: the concrete class is
    `Batched<ModelClass>(BatchedChatModel, <ModelClass>)`.
    """

    batcher: str = "bridge"
    """The bridge graph's name, as `wait(item, batcher=...)` takes it."""
    max_wait_s: float | None = None
    """`wait(..., max_wait=)`: past it the bridge answers through the normal API."""

    __batch_codec__: ClassVar[_Codec]

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """A batched copy is not serialised: `batched()` makes one from the plain model."""
        return False

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self.__batch_codec__.request(self, messages, stop, kwargs)
        reply = wait_sync(request.item, batcher=self.batcher, max_wait=self.max_wait_s)
        return self.__batch_codec__.result(self, request, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self.__batch_codec__.request(self, messages, stop, kwargs)
        reply = await wait(request.item, batcher=self.batcher, max_wait=self.max_wait_s)
        return self.__batch_codec__.result(self, request, reply)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        raise NotImplementedError(
            "Batched requests do not stream; stream()/astream() yield the whole answer as "
            "one chunk, use the unwrapped model for token streaming"
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._stream(messages)
        yield  # type: ignore[misc]  # pragma: no cover - makes this an async generator


@functools.cache
def _batched_class(base: type[BaseChatModel], codec: _Codec) -> type[BatchedChatModel]:
    namespace = {
        "__module__": __name__,
        "__qualname__": f"Batched{base.__name__}",
        "__doc__": f"A `{base.__name__}` whose calls go through a BatchBridge bridge.",
        "__batch_codec__": codec,
    }
    return type(f"Batched{base.__name__}", (BatchedChatModel, base), namespace)


def _codec_for(model: BaseChatModel) -> _Codec:
    for module_name, class_name, codec in _CODECS:
        # A model of the class means its module was imported; no provider is imported here.
        module = sys.modules.get(module_name)
        if module is not None and isinstance(model, getattr(module, class_name)):
            return codec
    raise TypeError(
        "batched() supports ChatOpenAI (langchain-openai), ChatGoogleGenerativeAI "
        "(langchain-google-genai) and ChatAnthropic (langchain-anthropic) models, "
        f"got {type(model).__name__}"
    )


def batched(model: _M, *, batcher: str = "bridge", max_wait: float | timedelta | None = None) -> _M:
    """A copy of `model` whose calls are answered through the bridge graph `batcher`.

    The copy is an instance of a subclass of the model's class, with the same settings and
    `disable_streaming=True`; the model itself is left as it was. A model already batched
    for `batcher` is returned as it is. With `max_wait` (seconds or a timedelta), a call
    its batch has not answered by then is answered through the provider's normal API.
    """
    seconds = max_wait_seconds(max_wait)
    if isinstance(model, BatchedChatModel):
        if model.batcher == batcher and model.max_wait_s == seconds:
            return model
        return model.model_copy(update={"batcher": batcher, "max_wait_s": seconds})
    cls = _batched_class(type(model), _codec_for(model))
    values = {name: getattr(model, name) for name in type(model).model_fields}
    values.update(batcher=batcher, disable_streaming=True, max_wait_s=seconds)
    copy = cls.model_construct(
        _fields_set={*model.model_fields_set, "batcher", "disable_streaming", "max_wait_s"},
        **values,
    )
    private = model.__pydantic_private__
    object.__setattr__(copy, "__pydantic_private__", None if private is None else dict(private))
    for name, value in vars(model).items():  # set by validators (ChatGoogleGenerativeAI's)
        if name not in values:
            object.__setattr__(copy, name, value)
    return copy  # type: ignore[return-value]


# -- Agents -----------------------------------------------------------------------------


@functools.cache
def _middleware_class() -> type[AgentMiddleware[Any, Any, Any]]:
    try:
        from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
    except ImportError as exc:
        raise ImportError(
            f"batching_middleware() needs langchain (for create_agent): {_INSTALL_HINT}"
        ) from exc

    class BatchingMiddleware(AgentMiddleware[Any, Any, Any]):
        """Runs each of the agent's model calls through the bridge graph `batcher`."""

        def __init__(self, batcher: str, max_wait: float | timedelta | None) -> None:
            super().__init__()
            self.batcher = batcher
            self.max_wait = max_wait

        def wrap_model_call(
            self,
            request: ModelRequest[Any],
            handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
        ) -> ModelResponse[Any]:
            model = batched(request.model, batcher=self.batcher, max_wait=self.max_wait)
            return handler(request.override(model=model))

        async def awrap_model_call(
            self,
            request: ModelRequest[Any],
            handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
        ) -> ModelResponse[Any]:
            model = batched(request.model, batcher=self.batcher, max_wait=self.max_wait)
            return await handler(request.override(model=model))

    BatchingMiddleware.__module__ = __name__
    return BatchingMiddleware


def batching_middleware(
    *, batcher: str = "bridge", max_wait: float | timedelta | None = None
) -> AgentMiddleware[Any, Any, Any]:
    """An agent middleware that answers every model call of the agent through `batcher`.

    `create_agent(model, tools, middleware=[batching_middleware(batcher="bridge")])`: each
    model call becomes one bridge item (the thread is interrupted until it is answered);
    tool calls run as usual in between. Needs `langchain`
    (`pip install 'batch-bridge[langchain]'`). `max_wait` is each call's deadline (see
    `batched`).
    """
    max_wait_seconds(max_wait)  # a wrong value fails here, not at the first model call
    return _middleware_class()(batcher, max_wait)  # type: ignore[call-arg]
